"""The contract between the composition root (`engine.service`) and the components it starts
with the daemon: what a component gets (`Runtime`) and what it is (`Component`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from daemon.config import Config
from daemon.engine.recorder import ResultRecorder
from daemon.engine.sender import Sender


@dataclass
class Runtime:
    """What the components built around the sender (webhook, metrics, reconciler) get."""

    config: Config
    dsn: str
    pool: asyncpg.Pool
    daemon_id: str
    sender: Sender
    recorder: ResultRecorder
    stop: asyncio.Event
    extra_tasks: dict[str, Coroutine[Any, Any, None]] = field(default_factory=dict)


# Plug-ins started with the daemon, each an async context manager factory taking the Runtime
# (the webhook server, the reconciler, metrics). Registered by their modules' owners.
Component = Callable[[Runtime], Any]
