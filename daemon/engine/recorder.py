"""Record send results in batches: one statement per flush, retried through database outages.

A result handed to the recorder is never dropped: a flush that fails on a connection-type
error is retried (tenacity, no give-up) until the database is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from daemon.core.retry import database_retrying
from daemon.db.pool import CONNECTION_ERRORS
from daemon.db.sender_store import SendResult, record_results
from daemon.logs import get_logger

log = get_logger(__name__)


class ResultRecorder:
    """Writes send results in batches (every `flush_interval_s`, sooner when `max_batch` are
    waiting), through database outages; `on_recorded` callbacks see each written batch."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_interval_s: float = 0.05,
        max_batch: int = 2000,
        on_recorded: Callable[[list[SendResult]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._pending: list[SendResult] = []
        self._wake = asyncio.Event()
        # One flush at a time: `close` must wait for a write `run` has in progress, or the
        # caller would cancel `run` (and that write) once `close` returned.
        self._flushing = asyncio.Lock()
        self._closing = False
        self.on_recorded: list[Callable[[list[SendResult]], None]] = (
            [on_recorded] if on_recorded else []
        )
        self.recorded = 0

    def add(self, result: SendResult) -> None:
        """Queue one result for the next batch."""
        self._pending.append(result)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    @property
    def backlog(self) -> int:
        """Results waiting to be written."""
        return len(self._pending)

    async def run(self) -> None:
        """Flush every `flush_interval_s` (sooner when a batch is full) until closed."""
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything waiting now (one flush at a time)."""
        async with self._flushing:
            while self._pending:
                batch, self._pending = (
                    self._pending[: self._max_batch],
                    self._pending[self._max_batch :],
                )
                await self._write(batch)

    async def _write(self, batch: list[SendResult]) -> None:
        async for attempt in database_retrying(CONNECTION_ERRORS, log, operation="record_results"):
            with attempt:
                async with self._pool.acquire() as conn:
                    await record_results(conn, batch)
        self.recorded += len(batch)
        for callback in self.on_recorded:
            callback(batch)

    async def close(self) -> None:
        """Final flush, after any flush in progress; shielded so that a cancelled shutdown still
        writes every result."""
        self._closing = True
        self._wake.set()
        await asyncio.shield(self.flush())
