"""The event loop a long-running command runs on: uvloop when chosen (or installed, for
`auto`), else asyncio's own; and the cyclic garbage collector tuned for a long run."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from daemon.errors import ConfigError

T = TypeVar("T")

# Each request makes dozens of short-lived containers; with CPython's default of 700, young
# collections ran every few messages and promoted in-flight requests to older generations.
YOUNG_GC_THRESHOLD = 20_000


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


def settle_heap() -> None:
    """Move what startup made (modules, config, SQL text) out of the collector's scans for
    good (`gc.freeze`), and collect young garbage less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """`asyncio.run(main)` on the chosen loop, the heap settled first (`settle_heap`)."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()
        raise
    settle_heap()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
