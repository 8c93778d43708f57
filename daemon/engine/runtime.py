"""The contract between the composition root (`engine.service`) and what it runs: what a
component gets (`Runtime`), what a component is (`Component`), and the one owner of the
background tasks (`TaskOwner`) that both `run_daemon` and `run_webhook` use."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from daemon.config import Config
from daemon.engine.recorder import ResultRecorder
from daemon.engine.sender import Sender
from daemon.logs import get_logger

log = get_logger(__name__)

CANCEL_AGAIN_AFTER_S = 0.5


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

    def writes_blocked(self) -> str | None:
        """Why the database blocks the daemon's writes now (None: it takes them)."""
        recorder = self.recorder
        return (recorder.block_reason or "writes blocked") if recorder.blocked else None


# Plug-ins started with the daemon, each an async context manager factory taking the Runtime
# (the webhook server, the reconciler, metrics). Registered by their modules' owners.
Component = Callable[[Runtime], Any]


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop`, and do nothing else."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


class TaskOwner:
    """Owns background tasks, each started by name. A task that fails, or returns before
    `stop` is set, is logged (`task_died`) and sets `stop`: the service stops loudly instead
    of running half alive; `failed` names those tasks. `cancel_all` cancels the tasks in
    reverse order of starting, each until it has stopped."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._tasks: list[asyncio.Task[None]] = []
        self.failed: list[str] = []

    def start(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` as the task `name`, supervised."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None and self._stop.is_set():
            return
        self.failed.append(task.get_name())
        log.error("task_died", task=task.get_name(), error=repr(error) if error else "returned")
        self._stop.set()

    async def cancel_all(self) -> None:
        """Cancel every task, the last started first, and wait for each to stop."""
        for task in reversed(self._tasks):
            await _cancel_until_done(task)


async def _cancel_until_done(task: asyncio.Task[None]) -> None:
    # Cancelling again matters: on Python 3.11 `asyncio.wait_for` can swallow a cancellation
    # that lands just as its inner wait completes.
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=CANCEL_AGAIN_AFTER_S)
