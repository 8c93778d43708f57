"""A counting semaphore whose uncontended take is a plain call.

`asyncio.Semaphore.acquire` is a coroutine, and its `locked()` check builds a generator over
the waiters: about a microsecond per send at full speed for a limit that one sending number
never reaches. Here `try_take` needs no coroutine; `take` waits in FIFO order; `give` hands a
freed slot straight to the longest waiter, so a newcomer cannot overtake it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """`count` slots, taken and given back in FIFO order."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("need at least one slot")
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots free now."""
        return self._free

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for it."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, waiting in line for one if none is free."""
        if self.try_take():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot, then cancelled: pass it on
            elif waiter in self._waiters:  # `give` may have dropped it already
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Give a slot back, straight to the longest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
