"""The reconciler: stored status receipts applied to contacts, in batches.

Woken by NOTIFY from the webhook (any process), by newly recorded sends (their wamids may
match receipts that came first), and by a periodic sweep for receipts whose back-off is over.
Each batch is one statement that locks what it takes (SKIP LOCKED), so any number of daemons
may reconcile the same database at once.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from daemon.config import WebhookConfig
from daemon.db import receipts_store as store
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.db.sender_store import SendResult
from daemon.engine.listener import listen
from daemon.engine.runtime import Runtime
from daemon.logs import get_logger

log = get_logger(__name__)

SWEEP_EVERY_S: Final = 1.0
"""Receipts waiting on a back-off are picked up by this periodic round."""
RETRY_AFTER_ERROR_S: Final = (0.5, 5.0)
MAX_REMEMBERED_WAMIDS: Final = 200_000
"""New wamids kept for the next round; beyond that the sweep finds their receipts anyway."""
BACKLOG_BATCH_FACTOR: Final = 8
"""While batches come back full the next one doubles, up to this times webhook.reconcile_batch."""
ORPHAN_LOG_LINES: Final = 20
"""receipt_orphaned lines per batch; the rest are counted in receipts_applied."""

# Lock conflicts that a later round resolves by itself.
_RETRYABLE: Final[tuple[type[BaseException], ...]] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.UniqueViolationError,
)


@dataclass
class ReconcileStats:
    """Running totals of the reconciler (rounds, batches, receipts by result)."""

    rounds: int = 0
    batches: int = 0
    applied: int = 0
    duplicate: int = 0
    orphaned: int = 0
    unmatched: int = 0
    busy: int = 0
    suppressed: int = 0
    retried: int = 0
    errors: int = 0

    def add(self, result: store.ReconcileResult) -> None:
        """Add one batch's result."""
        self.batches += 1
        self.applied += result.applied
        self.duplicate += result.duplicate
        self.orphaned += result.orphaned
        self.unmatched += result.unmatched
        self.busy += result.busy
        self.suppressed += result.suppressed
        self.retried += result.retried


def log_orphans(orphans: Sequence[store.OrphanReceipt]) -> None:
    """One warning per receipt that became an orphan (the first `ORPHAN_LOG_LINES` of a batch)."""
    for orphan in orphans[:ORPHAN_LOG_LINES]:
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


class Reconciler:
    """Applies pending receipts; `run()` is its loop, `wake()` and `on_sends_recorded()` the
    ways in. Several may run against one database (in one process or many)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: WebhookConfig,
        *,
        sweep_every_s: float = SWEEP_EVERY_S,
        max_attempts: int = 5,
    ) -> None:
        self._pool = pool
        self._batch_size = config.reconcile_batch
        self._orphan_after_s = config.orphan_after_s
        self._sweep_every_s = sweep_every_s
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._new_wamids: list[str] = []
        self._nothing_pending = False
        self.stats = ReconcileStats()

    def wake(self) -> None:
        """Reconcile now: a receipt was stored (NOTIFY), or a sweep is asked for."""
        self._nothing_pending = False  # a receipt was stored (NOTIFY) or a sweep is asked for
        self._wake.set()

    def on_sends_recorded(self, results: Sequence[SendResult]) -> None:
        """Recorder callback: receipts of these wamids that wait on a back-off are due now.
        When no receipt at all is pending, a new wamid can match nothing: no round trip."""
        if self._nothing_pending:
            return
        if len(self._new_wamids) < MAX_REMEMBERED_WAMIDS:
            self._new_wamids.extend(r.wamid for r in results if r.wamid is not None)
        self._wake.set()

    async def run(self) -> None:
        """Rounds until cancelled: on a wake-up, or every `sweep_every_s`."""
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._sweep_every_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.reconcile_due()
                failures = 0
            except RETRYABLE_ERRORS as exc:
                failures += 1
                self.stats.errors += 1
                log.warning("reconcile_failed", error=repr(exc), failures=failures)
                await asyncio.sleep(min(RETRY_AFTER_ERROR_S[1], RETRY_AFTER_ERROR_S[0] * failures))
                self._wake.set()
            except _RETRYABLE as exc:
                self.stats.errors += 1
                log.info("reconcile_conflict", error=type(exc).__name__)
                await asyncio.sleep(RETRY_AFTER_ERROR_S[0])
                self._wake.set()

    async def reconcile_due(self) -> store.ReconcileResult:
        """One round: batches until no full batch is due; the totals of the round."""
        self.stats.rounds += 1
        wamids, self._new_wamids = self._new_wamids, []
        totals = _Totals()
        async with self._pool.acquire() as conn:
            if wamids:
                try:
                    await store.wake_receipts_for_wamids(conn, wamids)
                except BaseException:
                    self._new_wamids.extend(wamids)  # for the next round
                    raise
            size = self._batch_size
            while True:
                started = time.perf_counter()
                result = await store.reconcile_batch(
                    conn, size, self._orphan_after_s, max_attempts=self._max_attempts
                )
                self.stats.add(result)
                totals.add(result)
                self._log_batch(result, time.perf_counter() - started)
                if result.picked < size:
                    break
                # A backlog: larger batches spread each statement's fixed cost over more rows.
                size = min(size * 2, self._batch_size * BACKLOG_BATCH_FACTOR)
            pending = await store.any_pending_receipt(conn)
            if not pending and not self._wake.is_set():  # no NOTIFY came in meanwhile
                self._nothing_pending = True
        return totals.result()

    def _log_batch(self, result: store.ReconcileResult, seconds: float) -> None:
        if not result.picked:
            return
        log_orphans(result.orphans)
        log.info(
            "receipts_applied",
            picked=result.picked,
            applied=result.applied,
            duplicate=result.duplicate,
            unmatched=result.unmatched,
            busy=result.busy,
            orphaned=result.orphaned,
            contacts_changed=result.contacts_changed,
            suppressed=result.suppressed,
            retried=result.retried,
            ms=round(seconds * 1000, 1),
        )


class _Totals:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(
            (
                "picked",
                "applied",
                "duplicate",
                "unmatched",
                "busy",
                "orphaned",
                "contacts_changed",
                "suppressed",
                "retried",
            ),
            0,
        )
        self.orphans: list[store.OrphanReceipt] = []

    def add(self, result: store.ReconcileResult) -> None:
        for key in self.counts:
            self.counts[key] += getattr(result, key)
        self.orphans.extend(result.orphans)

    def result(self) -> store.ReconcileResult:
        return store.ReconcileResult(**self.counts, orphans=self.orphans)


async def listen_for_receipts(dsn: str, on_notify: Callable[[], None]) -> None:
    """Wake on every stored POST (NOTIFY from the webhook). Runs until cancelled."""
    await listen(dsn, store.RECEIPTS_CHANNEL, on_notify)


def reconciler_tasks(reconciler: Reconciler, dsn: str) -> dict[str, Coroutine[Any, Any, None]]:
    """The reconciler's owned tasks, by name: its loop and its LISTEN connection."""
    return {
        "reconciler": reconciler.run(),
        "reconciler_listener": listen_for_receipts(dsn, reconciler.wake),
    }


@asynccontextmanager
async def reconciler_component(runtime: Runtime) -> AsyncIterator[Reconciler]:
    """Component of `wa-sender run`: the reconciler's tasks are owned by the daemon (a dead
    one stops it), and every recorder flush wakes it."""
    reconciler = Reconciler(
        runtime.pool, runtime.config.webhook, max_attempts=runtime.config.sender.max_attempts
    )
    tasks = reconciler_tasks(reconciler, runtime.dsn)
    runtime.extra_tasks.update(tasks)
    runtime.recorder.on_recorded.append(reconciler.on_sends_recorded)
    try:
        yield reconciler
    finally:
        if reconciler.on_sends_recorded in runtime.recorder.on_recorded:
            runtime.recorder.on_recorded.remove(reconciler.on_sends_recorded)
        for coro in tasks.values():  # never started: the daemon failed before its tasks ran
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                coro.close()
