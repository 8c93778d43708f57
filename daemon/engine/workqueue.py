"""The FIFO of claimed contacts waiting for one sending number's workers.

`asyncio.Queue` costs about ten Python-level calls per item put and taken (`put_nowait`,
`full`, `_put`, `_wakeup_next`, an `Event.clear` for `join`, then `get_nowait`, `empty`,
`_get`, `_wakeup_next` and `qsize`), about half a microsecond per message at full speed, for
features the sender does not use (a size bound, `join`). Here a claim is put as one batch, and a
worker's fast path reads `items`, a plain `deque`, with C calls only; only an empty queue
costs a coroutine.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class WorkQueue(Generic[T]):
    """An unbounded FIFO: items put in batches, taken one at a time."""

    def __init__(self) -> None:
        # Taken from the left. Workers may `popleft` it directly when it is not empty.
        self.items: deque[T] = deque()
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.items)

    def put_many(self, items: Iterable[T]) -> None:
        """Append items and wake the workers waiting for one."""
        self.items.extend(items)
        if self.items and self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def take(self) -> T:
        """The oldest item, once there is one."""
        while not self.items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled before an item came
                    self._waiters.remove(waiter)
        return self.items.popleft()

    def take_all(self) -> list[T]:
        """Empty the queue; its items, oldest first."""
        items = list(self.items)
        self.items.clear()
        return items

    def take_where(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove the items `predicate` picks, keeping the others in order."""
        kept: list[T] = []
        taken: list[T] = []
        for item in self.items:
            (taken if predicate(item) else kept).append(item)
        self.items.clear()
        self.items.extend(kept)
        return taken
