"""Record send results in batches: one statement per flush, retried through database outages.

A result handed to the recorder is never dropped:
- a flush that fails on a lost connection, or on a database that blocks writes (read-only,
  statement timeout, disk full, a lock held longer than `write_timeout_s`), is retried until
  the database takes it; while writes are blocked `blocked` is set and the sender stops;
- a flush that fails on a value (a wamid another contact holds, a number out of range) is
  split until the one result that causes it is found, and that result is written as
  `error` with the reason instead (`quarantine`): one poisonous answer never fails the
  other results of its batch;
- at shutdown the final flush is bounded by a deadline; what it could not write is returned
  by `close` for the spool (`engine.spool`), replayed at the next start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg

from daemon.core.decide import Decision
from daemon.core.recordable import quarantine_title
from daemon.core.retry import database_retrying
from daemon.core.states import ContactState
from daemon.db.pool import POISON_ERRORS, RETRYABLE_ERRORS, is_blocked_write
from daemon.db.sender_store import SendResult, record_results
from daemon.logs import get_logger

log = get_logger(__name__)

# TypeError: orjson refused a value of the batch.
_ISOLATE: tuple[type[BaseException], ...] = (*POISON_ERRORS, TypeError)


def quarantined(result: SendResult, problem: str) -> SendResult:
    """What is written for a result the database refused: `error` with the reason, no wamid
    and no error code (the values that may have caused it), the outcome marked unknown (a
    receipt carrying its callback data may still resolve it). Never sent again."""
    decision = Decision(ContactState.ERROR, error_title=quarantine_title(problem), unknown=True)
    return SendResult(result.contact_id, result.attempt, result.phone, decision, result.at)


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
        write_timeout_s: float = 10.0,
    ) -> None:
        self._pool = pool
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._write_timeout_s = write_timeout_s
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
        self.quarantined = 0
        self._blocked_since: float | None = None  # monotonic, first blocked write in a row
        # A plain attribute, read before every send: whether the database blocks writes.
        self.blocked = False
        self.block_reason: str | None = None
        self._unblocked = asyncio.Event()
        self._unblocked.set()

    def add(self, result: SendResult) -> None:
        """Queue one result for the next batch."""
        self._pending.append(result)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    @property
    def backlog(self) -> int:
        """Results waiting to be written."""
        return len(self._pending)

    def blocked_for_s(self, now: float | None = None) -> float:
        """Seconds the writes have been blocked in a row (0 when they are not)."""
        if self._blocked_since is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self._blocked_since

    async def wait_unblocked(self) -> None:
        """Until the database takes writes again."""
        await self._unblocked.wait()

    def note_blocked(self, exc: BaseException) -> None:
        """A write of the daemon's (this one's or another's) met a database blocking writes."""
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()
            self.blocked = True
            self._unblocked.clear()
            log.error("database_writes_blocked", error=_describe(exc))
        self.block_reason = _describe(exc)

    def note_written(self) -> None:
        """A write went through: no longer blocked."""
        if self._blocked_since is not None:
            log.warning("database_writes_unblocked", blocked_s=round(self.blocked_for_s(), 3))
            self._blocked_since = None
            self.blocked = False
            self.block_reason = None
            self._unblocked.set()

    async def run(self) -> None:
        """Flush every `flush_interval_s` (sooner when a batch is full) until closed."""
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self, deadline: float | None = None) -> None:
        """Write everything waiting now (one flush at a time); with a `deadline` (monotonic)
        give up at it, the unwritten results left waiting."""
        async with self._flushing:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    await self._write_isolating(batch, deadline)
                except BaseException:
                    self._pending[:0] = batch  # not written: first in line again
                    raise

    async def _write_isolating(self, batch: list[SendResult], deadline: float | None) -> None:
        try:
            await self._write(batch, deadline)
        except _ISOLATE as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write_isolating(batch[:half], deadline)
                await self._write_isolating(batch[half:], deadline)
                return
            result = batch[0]
            problem = _describe(exc)
            log.error(
                "send_result_quarantined",
                contact_id=result.contact_id,
                attempt=result.attempt,
                state=result.decision.state.value,
                problem=problem,
            )
            self.quarantined += 1
            await self._write([quarantined(result, problem)], deadline)

    async def _write(self, batch: list[SendResult], deadline: float | None) -> None:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        retrying = database_retrying(
            RETRYABLE_ERRORS, log, operation="record_results", max_s=2.0, deadline_s=left
        )
        async for attempt in retrying:
            with attempt:
                try:
                    async with self._pool.acquire(timeout=self._write_timeout_s) as conn:
                        await record_results(conn, batch, timeout=self._write_timeout_s)
                except TimeoutError as exc:  # a lock, or a server that stalls
                    self.note_blocked(exc)
                    raise
                except RETRYABLE_ERRORS as exc:
                    if is_blocked_write(exc):
                        self.note_blocked(exc)
                    raise
        self.note_written()
        self.recorded += len(batch)
        for callback in self.on_recorded:
            callback(batch)

    async def close(self, deadline: float | None = None) -> list[SendResult]:
        """Final flush, after any flush in progress; shielded so that a cancelled shutdown still
        writes every result. With a `deadline` (monotonic) the results it could not write by
        then are returned (for the spool) instead of being waited for."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.shield(self.flush(deadline))
        except RETRYABLE_ERRORS as exc:
            log.error("final_flush_failed", error=_describe(exc), unwritten=len(self._pending))
        unwritten, self._pending = self._pending, []
        return unwritten


def _describe(exc: BaseException) -> str:
    """One line: the error's class and its message (asyncpg's carry no secret)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
