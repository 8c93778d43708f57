"""The webhook's group commit: the statuses of POSTs that arrive while a store statement runs
are stored together by the next one, and each POST is answered only once that statement has
committed.

At most `in_flight` statements at a time per process: while fewer run, a POST's statuses go
at once (no added latency when idle); while that many run, the POSTs that come in wait and
the next statement takes them all (up to `max_rows` statuses). Under load a statement then
carries several POSTs' statuses: its fixed cost (parse, plan, the round trip, the commit) is
paid once for all of them. Nothing is acknowledged before it is durable: a failed statement
fails every POST it carried (each answers 503 and Meta delivers it again); a body PostgreSQL
cannot hold (a DataError: NUL characters, lone surrogates) is stored alone so that it fails
only itself.

By default the statement stores the statuses pending, for the reconciler's large batches
(store_receipt_bodies). With `webhook.apply_on_ingest` it also applies them to their contacts
(receipts_store.ingest_receipts: the reconciler's rules), so a status whose contact is there
is written once and never read back; only those that cannot be applied yet (no contact yet,
or it is locked elsewhere) are left pending. Measured, that wrote 40 % less WAL but made each
answer slower and receipts drain later (docs/performance.md), hence off by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from daemon.config import WebhookConfig
from daemon.db import receipts_store
from daemon.logs import get_logger

log = get_logger(__name__)

IN_FLIGHT: Final = 3
"""Statements at once: one alone serialised the webhook behind each statement's round trip
(measured: receipts drained 17 s after the last send); a few keep both cores busy."""
MAX_ROWS: Final = 5_000
"""Statuses per statement at most (a group's arrays stay well under a megabyte or so)."""
ORPHAN_LOG_LINES: Final = 20
"""receipt_orphaned lines per statement (as the reconciler's per batch)."""
UNSTORABLE: Final[tuple[type[BaseException], ...]] = (asyncpg.DataError, UnicodeEncodeError)
"""Errors of one body's content: retried body by body, so only that body fails."""


@dataclass
class _Waiting:
    rows: Sequence[receipts_store.ReceiptRow]
    digest: bytes | None
    done: asyncio.Future[receipts_store.StoreResult]


@dataclass
class GroupCommitStats:
    """Statements run and POSTs they carried (POSTs / statements: the grouping achieved)."""

    statements: int = 0
    bodies: int = 0
    rows: int = 0
    largest: int = 0  # the most POSTs one statement carried
    applied: int = 0  # at ingest (the others: duplicates, pending, orphans, replays)
    pending: int = 0  # left to the reconciler


class GroupCommit:
    """Stores webhook bodies' statuses, grouping the POSTs that wait into one statement."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: WebhookConfig | None = None,
        *,
        max_attempts: int = 5,
        max_rows: int = MAX_ROWS,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._pool = pool
        self._config = config if config is not None else WebhookConfig()
        self._max_attempts = max_attempts
        self._max_rows = max_rows
        self._waiting: list[_Waiting] = []
        self._in_flight = in_flight
        self._flushers: set[asyncio.Task[None]] = set()
        self.stats = GroupCommitStats()

    async def store(
        self, rows: Sequence[receipts_store.ReceiptRow], digest: bytes | None
    ) -> receipts_store.StoreResult:
        """Store one body's statuses; returns once the statement that carried them committed
        (raises what it raised). Cancelling the caller does not cancel the statement."""
        done: asyncio.Future[receipts_store.StoreResult] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append(_Waiting(rows, digest, done))
        if len(self._flushers) < self._in_flight:
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._take(self._waiting)
            try:
                await self._store_group(group)
            except BaseException as exc:  # every POST it carried answers non-200
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if not isinstance(exc, Exception):
                    raise

    def _take(self, waiting: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
        """The next group (at least one body, at most `max_rows` statuses) and the rest."""
        rows = 0
        for n, item in enumerate(waiting):
            rows += len(item.rows)
            if n and rows > self._max_rows:
                return waiting[:n], waiting[n:]
        return waiting, []

    async def _store_group(self, group: list[_Waiting]) -> None:
        async with self._pool.acquire() as conn:
            try:
                results = await self._run(conn, group)
            except UNSTORABLE:
                if len(group) == 1:
                    raise
                await self._store_one_by_one(conn, group)
                return
        self._count(group)
        for waiting, result in zip(group, results, strict=True):
            if not waiting.done.done():
                waiting.done.set_result(result)

    async def _store_one_by_one(self, conn: asyncpg.Connection, group: list[_Waiting]) -> None:
        """A group with an unstorable body: each body in its own statement."""
        for waiting in group:
            try:
                [result] = await self._run(conn, [waiting])
            except UNSTORABLE as exc:
                if not waiting.done.done():
                    waiting.done.set_exception(exc)
                continue
            self._count([waiting])
            if not waiting.done.done():
                waiting.done.set_result(result)

    async def _run(
        self, conn: asyncpg.Connection, group: Sequence[_Waiting]
    ) -> list[receipts_store.StoreResult]:
        """One statement for the group: each body's result."""
        bodies = [(w.rows, w.digest) for w in group]
        config = self._config
        if not config.apply_on_ingest:
            return await receipts_store.store_receipt_bodies(conn, bodies, config.replay_window_s)
        result = await receipts_store.ingest_receipts(
            conn,
            bodies,
            replay_window_s=config.replay_window_s,
            orphan_after_s=config.orphan_after_s,
            max_attempts=self._max_attempts,
        )
        self.stats.applied += result.applied
        self.stats.pending += result.pending
        for orphan in result.orphans[:ORPHAN_LOG_LINES]:
            log.warning(
                "receipt_orphaned",
                receipt_id=orphan.id,
                wamid=orphan.wamid,
                status=orphan.status,
                recipient_id=orphan.recipient_id or "",
                callback_data=orphan.callback_data,
                received_at=orphan.received_at,
                reason=orphan.reason or "no contact matched",
            )
        return result.bodies

    def _count(self, group: Sequence[_Waiting]) -> None:
        self.stats.statements += 1
        self.stats.bodies += len(group)
        self.stats.rows += sum(len(w.rows) for w in group)
        self.stats.largest = max(self.stats.largest, len(group))

    async def close(self) -> None:
        """Wait for the statement in flight (the POSTs it carries get their answers)."""
        await asyncio.gather(*self._flushers, return_exceptions=True)
