"""The event loop a long-running command runs on: uvloop when chosen (or installed, for
`auto`), else asyncio's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from daemon.errors import ConfigError

T = TypeVar("T")

EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # runtime.event_loop, and the baselines' --event-loop


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for `asyncio.Runner` (None: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "the event loop is set to uvloop, but uvloop is not installed"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
