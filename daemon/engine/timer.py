"""The loop of the daemon's timed tasks: one pass, then sleep until the time the pass named or
until someone wakes the task (a NOTIFY), whichever comes first.

A pass that meets a database error the pool retries is logged and tried again after
`RETRY_AFTER_S`; any other error ends the task (the runtime's supervision handles it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from daemon.db.pool import RETRYABLE_ERRORS
from daemon.logs import get_logger

log = get_logger(__name__)

RETRY_AFTER_S = 1.0


class WakeableTimer:
    """Runs `one_pass` (which returns seconds until it wants to run again) until cancelled;
    `wake` runs it again now."""

    def __init__(self, one_pass: Callable[[], Awaitable[float]], failure_event: str) -> None:
        self._one_pass = one_pass
        self._failure_event = failure_event
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run the next pass now rather than at its time."""
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: a pass, then sleep until its time or a wake-up."""
        while True:
            self._wake.clear()
            try:
                sleep_s = await self._one_pass()
            except RETRYABLE_ERRORS as exc:
                log.warning(self._failure_event, error=repr(exc))
                sleep_s = RETRY_AFTER_S
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=sleep_s)
            except TimeoutError:
                pass
