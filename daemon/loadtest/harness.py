"""``wa-sender loadtest``: run the systems one after the other against a fresh mock each, on
fresh data, and gather every figure.

Per system: a fresh database (``loadtest_<random>``) seeded in bulk, a fresh mock process, the
sender process(es) measured by psutil, a monitor polling progress, then the raw data (the
mock's accepted messages, the contact rows, receipts, latency histograms) turned into figures
by :mod:`daemon.loadtest.results`. Every process started here is stopped and reaped before
the function returns, whatever happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from daemon.loadtest import results
from daemon.loadtest.analysis import ContactRows
from daemon.loadtest.fleet import DaemonFleet, DaemonSettings, chaos_loop
from daemon.loadtest.latency import Histogram, read_secondly
from daemon.loadtest.mockproc import (
    APP_SECRET,
    TOKEN,
    MockProcess,
    MockSettings,
    fetch_accepted,
    fetch_stats,
    start_mock,
)
from daemon.loadtest.options import LoadtestError, LoadtestOptions
from daemon.loadtest.processes import Child, free_port, kill_now, stop
from daemon.loadtest.progress import Progress
from daemon.loadtest.sampling import ProcessSampler
from daemon.loadtest.seeding import fresh_database, prepare_database, start_campaigns

WEBHOOK_PATH = "/webhook"
POLL_S = 0.5
# Counting pending contacts costs the database a scan: done when the mock has accepted as
# many messages as there are contacts, and otherwise only now and then (permanent failures,
# contacts out of attempts: runs that end with fewer accepted messages than contacts).
DB_CHECK_EVERY_S = 5.0
# With no receipts there is nothing to wait for after a lease expires: retry soon.
GRACE_S = "3"

_PENDING_CONTACTS = """
SELECT count(*) FROM contacts
WHERE campaign_id = ANY($1::bigint[]) AND state IN ('initial', 'in_progress', 'retry_scheduled')
"""
_PENDING_RECEIPTS = "SELECT count(*) FROM status_receipts WHERE processing_state = 'pending'"
_CONTACT_ROWS = """
SELECT id, state::text AS state, attempts,
       extract(epoch FROM claimed_at)::float8 AS claimed_at,
       extract(epoch FROM sent_at)::float8 AS sent_at,
       wamid
FROM contacts WHERE campaign_id = ANY($1::bigint[])
"""
_LAST_CHANGE = """
SELECT extract(epoch FROM max(updated_at))::float8 FROM contacts
WHERE campaign_id = ANY($1::bigint[])
"""
_RECEIPT_STATES = (
    "SELECT processing_state, count(*) AS n FROM status_receipts GROUP BY processing_state"
)
_RECEIPT_TIMES = """
SELECT extract(epoch FROM received_at)::float8 AS received_at,
       extract(epoch FROM processed_at)::float8 AS processed_at,
       processing_state
FROM status_receipts
"""


@dataclass
class Context:
    options: LoadtestOptions
    server_dsn: str
    log_dir: Path
    deadline: float  # monotonic
    progress: Progress
    postgres_pid: int | None = None
    children: list[Child] = field(default_factory=list)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def sampler(self, mock: MockProcess, *, database: bool) -> ProcessSampler:
        """A sampler watching the mock, the harness itself and (``database``) the server."""
        sampler = ProcessSampler()
        sampler.watch_child("mock", mock.child)
        sampler.watch_pid("harness", os.getpid(), "harness", tree=False)
        if database and self.postgres_pid is not None:
            sampler.watch_pid("postgres", self.postgres_pid, "postgres", tree=True)
        return sampler


Runner = Callable[[Context], Awaitable[dict[str, Any]]]


async def run_loadtest(
    options: LoadtestOptions,
    server_dsn: str,
    log_dir: Path,
    progress: Progress,
    *,
    postgres_pid: int | None = None,
) -> dict[str, Any]:
    """Run every system of ``options`` in turn; the report (JSON-able)."""
    from daemon.loadtest.baselines import run_floor, run_pgqueuer

    runners: dict[str, Runner] = {
        "wa-sender": run_wa_sender,
        "floor": run_floor,
        "pgqueuer": run_pgqueuer,
    }
    ctx = Context(options, server_dsn, log_dir, time.monotonic() + options.timeout_s, progress)
    ctx.postgres_pid = postgres_pid if postgres_pid else await _server_pid(server_dsn)
    report: dict[str, Any] = {
        "version": 1,
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "scenario": options.describe(),
        "machine": machine_info(),
        "runs": {},
    }
    rounds: list[dict[str, Any]] = []
    try:
        for number in range(1, options.rounds + 1):
            runs: dict[str, Any] = {}
            for system in round_order(options.systems, number):
                of = f", round {number} of {options.rounds}" if options.rounds > 1 else ""
                progress.note(f"== {system}: {options.contacts:,} contacts{of}")
                runs[system] = await runners[system](ctx)
            rounds.append({system: runs[system] for system in options.systems})
    finally:
        kill_now([c for c in ctx.children if c.running])
    report.update(results.summarise_rounds(rounds))
    return report


def round_order(systems: Sequence[str], number: int) -> list[str]:
    """The order of the systems in round `number` (1-based): as given, then reversed, and so
    on. This machine's speed drifts within minutes; alternating the order keeps a steady drift
    from favouring whichever system always runs first."""
    return list(systems) if number % 2 else list(reversed(systems))


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def _server_pid(dsn: str) -> int | None:
    """The postmaster's pid when the server runs on this machine and we may look at it."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        await conn.close()
    try:
        import psutil

        parent = psutil.Process(backend).parent()
    except Exception:  # another host, another user: no server figures
        return None
    return parent.pid if parent is not None else None


# -- wa-sender ---------------------------------------------------------------------------


def daemon_env(options: LoadtestOptions, base_url: str) -> dict[str, str]:
    env = {
        "WA_SENDER_WHATSAPP_BASE_URL": base_url,
        "WA_SENDER_WHATSAPP_ACCESS_TOKEN": TOKEN,
        "WA_SENDER_WHATSAPP_MAX_CONNECTIONS": str(options.effective_max_connections),
        "WA_SENDER_SENDER_RATE_PER_SECOND": repr(options.daemon_rate),
        "WA_SENDER_SENDER_BURST": repr(options.daemon_burst),
        "WA_SENDER_SENDER_CONCURRENCY": str(options.effective_concurrency),
        "WA_SENDER_RECOVERY_GRACE_S": GRACE_S,
        "WA_SENDER_WEBHOOK_ENABLED": "true" if options.receipts else "false",
        "WA_SENDER_WEBHOOK_HOST": "127.0.0.1",
        "WA_SENDER_WEBHOOK_PATH": WEBHOOK_PATH,
        "WA_SENDER_LOGGING_FORMAT": "json",
        "WA_SENDER_LOGGING_LEVEL": "info",
    }
    if options.receipts:
        env["WA_SENDER_WHATSAPP_APP_SECRET"] = APP_SECRET
        env["WA_SENDER_WHATSAPP_VERIFY_TOKEN"] = "loadtest-verify-token"
    for key, value in options.settings:
        section, _, name = key.partition(".")
        env[f"WA_SENDER_{section.upper()}_{name.upper()}"] = value
    return env


def mock_settings(options: LoadtestOptions, webhook_url: str | None = None) -> MockSettings:
    return MockSettings(
        api_limit=options.api_limit,
        api_burst=options.api_burst,
        latency_ms=options.latency_ms,
        error_rate=options.error_rate,
        webhook_url=webhook_url,
        seed=options.seed,
        fast_lane=options.mock_fast_lane,
    )


async def run_wa_sender(ctx: Context) -> dict[str, Any]:
    options = ctx.options
    run_dir = ctx.log_dir / "wa-sender"
    run_dir.mkdir(parents=True, exist_ok=True)
    async with fresh_database(ctx.server_dsn) as dsn:
        ctx.progress.note(f"   seeding {options.contacts:,} contacts")
        seeded = time.monotonic()
        campaign_ids = await asyncio.wait_for(
            prepare_database(dsn, options.contacts, options.numbers), max(1.0, ctx.remaining_s())
        )
        seed_s = time.monotonic() - seeded
        # Each daemon's web server (webhook and /metrics) on a port of its own.
        ports = tuple(free_port() for _ in range(options.daemons))
        webhook_url = f"http://127.0.0.1:{ports[0]}{WEBHOOK_PATH}" if options.receipts else None
        mock = await start_mock(mock_settings(options, webhook_url), run_dir / "mock.log")
        ctx.children.append(mock.child)
        sampler = ctx.sampler(mock, database=True)
        fleet = DaemonFleet(
            options.daemons,
            DaemonSettings(dsn, daemon_env(options, mock.base_url), ports, options.probe),
            run_dir,
            sampler,
        )
        stop_sampling = asyncio.Event()
        stop_chaos = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await fleet.start(ctx.deadline)
            tasks.append(asyncio.create_task(sampler.run(stop_sampling), name="sampler"))
            t0 = time.time()
            await start_campaigns(dsn, campaign_ids)
            if options.kill_every_s:
                tasks.append(
                    asyncio.create_task(
                        chaos_loop(fleet, options.kill_every_s, stop_chaos, ctx.deadline),
                        name="chaos",
                    )
                )
            async with aiohttp.ClientSession() as session:
                watch = await monitor(
                    ctx,
                    session,
                    mock,
                    "wa-sender",
                    t0,
                    pending=lambda conn: _pending(conn, campaign_ids, options.receipts),
                    dsn=dsn,
                    crashed=lambda: _crashed(tasks),
                )
                t_done = time.time()
                stop_chaos.set()
                await finish_tasks(tasks[1:])
                exit_codes = await fleet.stop()
                stats = await fetch_stats(session, mock.base_url)
                accepted = await fetch_accepted(session, mock.base_url)
            rows, receipts, last_change = await collect_database(
                dsn, campaign_ids, options.receipts
            )
            if receipts is not None:
                receipts.mock = {k: int(v) for k, v in stats.get("receipts", {}).items()}
        finally:
            stop_chaos.set()
            stop_sampling.set()
            await finish_tasks(tasks)
            kill_now([c for c in fleet.children if c.running])
            await stop(mock.child, 10)
        sampler.sample()
    data = results.RunData(
        system="wa-sender",
        contacts=options.contacts,
        t0=t0,
        t_done=finished_at(t_done, last_change, watch.completed),
        # A daemon that did not exit 0 on SIGTERM (crash, failed drain) fails the run.
        completed=watch.completed and all(code == 0 for code in exit_codes),
        accepted=accepted,
        mock_stats=stats,
        sampler=sampler,
        latency=read_latency(fleet.latency_files()),
        rows=rows,
        receipts=receipts,
        kills=fleet.kills,
        throttled_at=throttled_times(fleet.log_files()),
        throttle_series=watch.throttle_series,
        notes={
            "seed_s": round(seed_s, 3),
            "daemon_exit_codes": exit_codes,
            "daemon_starts": len(fleet.children),
            "timed_out": watch.timed_out,
            "done_noticed_s": round(t_done - t0, 3),
            "webhook_url": webhook_url,
        },
    )
    return results.build(data)


def finished_at(noticed: float, last_change: float | None, completed: bool) -> float:
    """When the last contact (or receipt) changed, read from the database: the monitor only
    notices completion at its next poll."""
    if completed and last_change is not None:
        return min(noticed, last_change)
    return noticed


def _crashed(tasks: Iterable[asyncio.Task[None]]) -> str | None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return f"{task.get_name()} failed: {task.exception()!r}"
    return None


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


async def _pending(conn: asyncpg.Connection, campaign_ids: Sequence[int], receipts: bool) -> int:
    left: int = await conn.fetchval(_PENDING_CONTACTS, campaign_ids)
    if receipts and left == 0:
        left = await conn.fetchval(_PENDING_RECEIPTS)
    return left


@dataclass
class Watch:
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
        for r in await conn.fetch(_CONTACT_ROWS, campaign_ids):
            rows.ids.append(r["id"])
            rows.states.append(r["state"])
            rows.attempts.append(r["attempts"])
            rows.claimed_at.append(r["claimed_at"])
            rows.sent_at.append(r["sent_at"])
            rows.wamid.append(r["wamid"])
        last_change: float | None = await conn.fetchval(_LAST_CHANGE, campaign_ids)
        figures = None
        if receipts:
            figures = results.ReceiptFigures()
            for r in await conn.fetch(_RECEIPT_STATES):
                figures.by_state[r["processing_state"]] = r["n"]
            for r in await conn.fetch(_RECEIPT_TIMES):
                figures.received_at.append(r["received_at"])
                if r["processed_at"] is not None and r["processing_state"] != "pending":
                    figures.processed_at.append(r["processed_at"])
            if figures.processed_at and last_change is not None:
                last_change = max(last_change, max(figures.processed_at))
        return rows, figures, last_change
    finally:
        await conn.close()


def read_latency(paths: Iterable[Path]) -> dict[int, Histogram]:
    lines: list[str] = []
    for path in paths:
        try:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            continue
    return read_secondly(lines)


def throttled_times(paths: Iterable[Path]) -> list[float]:
    """When the daemons were refused with 130429, from their JSON log lines."""
    out: list[float] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if '"send_failed"' not in line or "130429" not in line:
                continue
            try:
                event = json.loads(line)
                if event.get("code") == 130429:
                    out.append(datetime.fromisoformat(event["timestamp"]).timestamp())
            except (ValueError, KeyError, TypeError):
                continue
    return out
