"""What every system's run shares: the run context, the mock's settings, the monitor that
polls until a run is done, and reading the figures back (database rows, latency files).

``harness`` (wa-sender) and ``baselines`` (the floor, PgQueuer) both build on it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from daemon.db.receipts_store import receipt_counts
from daemon.db.sql import query
from daemon.loadtest import results
from daemon.loadtest.analysis import ContactRows
from daemon.loadtest.latency import Histogram, read_secondly
from daemon.loadtest.mockproc import MockProcess, MockSettings, fetch_stats
from daemon.loadtest.options import LoadtestError, LoadtestOptions
from daemon.loadtest.processes import Child
from daemon.loadtest.progress import Progress
from daemon.loadtest.sampling import ProcessSampler

POLL_S = 0.5
# Counting pending contacts costs the database a scan: done when the mock has accepted as
# many messages as there are contacts, and otherwise only now and then (permanent failures,
# contacts out of attempts: runs that end with fewer accepted messages than contacts).
DB_CHECK_EVERY_S = 5.0


@dataclass
class Context:
    """One load test's settings, deadline and progress, and every child process it started."""

    options: LoadtestOptions
    server_dsn: str
    log_dir: Path
    deadline: float  # monotonic
    progress: Progress
    postgres_pid: int | None = None
    children: list[Child] = field(default_factory=list)

    def remaining_s(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.deadline - time.monotonic()

    def sampler(self, mock: MockProcess, *, database: bool) -> ProcessSampler:
        """A sampler watching the mock, the harness itself and (``database``) the server."""
        sampler = ProcessSampler()
        sampler.watch_child("mock", mock.child)
        sampler.watch_pid("harness", os.getpid(), "harness", tree=False)
        if database and self.postgres_pid is not None:
            sampler.watch_pid("postgres", self.postgres_pid, "postgres", tree=True)
        return sampler


def mock_settings(
    options: LoadtestOptions, webhook_url: str | None = None, *, replies: bool = True
) -> MockSettings:
    """The mock process's settings for this scenario (receipts posted to ``webhook_url``;
    inbound replies unless `replies` is False: the no-replies system)."""
    replies = replies and options.receipts
    return MockSettings(
        api_limit=options.api_limit,
        api_burst=options.api_burst,
        latency_ms=options.latency_ms,
        error_rate=options.error_rate,
        webhook_url=webhook_url,
        seed=options.seed,
        fast_lane=options.mock_fast_lane,
        reply_rate=options.reply_rate if replies else 0.0,
        optout_rate=options.optout_rate if replies else 0.0,
    )


def finished_at(noticed: float, last_change: float | None, completed: bool) -> float:
    """When the last contact (or receipt) changed, read from the database: the monitor only
    notices completion at its next poll."""
    if completed and last_change is not None:
        return min(noticed, last_change)
    return noticed


async def finish_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Let stopped tasks end (bounded), cancel the rest; re-raise a task's own failure."""
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=30)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise LoadtestError(f"{task.get_name()} failed: {task.exception()!r}")


@dataclass
class Watch:
    """How a monitored run ended, and the mock's 130429 count over time."""

    completed: bool
    timed_out: bool
    throttle_series: list[tuple[float, int]]


async def monitor(
    ctx: Context,
    session: aiohttp.ClientSession,
    mock: MockProcess,
    label: str,
    t0: float,
    *,
    pending: Callable[[asyncpg.Connection], Awaitable[int]] | None,
    dsn: str | None,
    crashed: Callable[[], str | None],
    finished: Callable[[], bool] | None = None,
) -> Watch:
    """Poll until done (nothing pending in the database, no receipt left at the mock, or the
    process ``finished``), the deadline, or a crash; draw progress meanwhile."""
    total = ctx.options.contacts
    series: list[tuple[float, int]] = []
    conn = await asyncpg.connect(dsn) if dsn else None
    last_check = 0.0
    last_accepted, last_t = 0, time.monotonic()
    rate: float | None = None
    try:
        while True:
            stats = await fetch_stats(session, mock.base_url)
            now = time.monotonic()
            accepted = int(stats.get("accepted", 0))
            throttled = int(stats.get("errors_by_code", {}).get(results.THROTTLE_CODE, 0))
            series.append((time.time(), throttled))
            if now - last_t >= 1.0:
                rate = (accepted - last_accepted) / (now - last_t)
                last_accepted, last_t = accepted, now
            receipts_left = int(stats.get("pending", 0))
            extra = f"429s {throttled}" + (f"  receipts {receipts_left}" if receipts_left else "")
            ctx.progress.update(label, accepted, total, rate, time.time() - t0, extra)
            if (problem := crashed()) is not None:
                raise LoadtestError(problem)
            done = finished() if finished is not None else False
            due = accepted >= total or now - last_check >= DB_CHECK_EVERY_S
            if not done and conn is not None and pending is not None and due:
                last_check = now
                done = await pending(conn) == 0 and receipts_left == 0
            if done:
                return Watch(True, False, series)
            if ctx.remaining_s() <= 0:
                ctx.progress.note(f"   {label}: timed out")
                return Watch(False, True, series)
            await asyncio.sleep(POLL_S)
    finally:
        ctx.progress.done()
        if conn is not None:
            await conn.close()


async def collect_database(
    dsn: str, campaign_ids: Sequence[int], receipts: bool
) -> tuple[ContactRows, results.ReceiptFigures | None, float | None]:
    """The contact rows, the receipts (when on), and the epoch time of the last change."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = ContactRows()
        for r in await conn.fetch(query("loadtest_contact_rows"), campaign_ids):
            rows.ids.append(r["id"])
            rows.states.append(r["state"])
            rows.attempts.append(r["attempts"])
            rows.claimed_at.append(r["claimed_at"])
            rows.sent_at.append(r["sent_at"])
            rows.wamid.append(r["wamid"])
        rows.attempt_knowledge = {
            (r["contact_id"], r["attempt"]): (r["unknown"], r["known_sent"])
            for r in await conn.fetch(query("loadtest_attempt_knowledge"), campaign_ids)
        }
        last_change: float | None = await conn.fetchval(query("loadtest_last_change"), campaign_ids)
        figures = None
        if receipts:
            figures = results.ReceiptFigures()
            figures.by_state.update(await receipt_counts(conn))
            for r in await conn.fetch(query("loadtest_receipt_times")):
                figures.received_at.append(r["received_at"])
                if r["processed_at"] is not None and r["processing_state"] != "pending":
                    figures.processed_at.append(r["processed_at"])
            if figures.processed_at and last_change is not None:
                last_change = max(last_change, max(figures.processed_at))
        return rows, figures, last_change
    finally:
        await conn.close()


def read_latency(paths: Iterable[Path]) -> dict[int, Histogram]:
    """The per-second latency histograms of every file in ``paths`` (missing files skipped)."""
    lines: list[str] = []
    for path in paths:
        try:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            continue
    return read_secondly(lines)
