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
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from daemon.db.listening_store import inbound_pending
from daemon.db.receipts_store import pending_receipt_count
from daemon.db.sql import query
from daemon.loadtest import pgstats, results
from daemon.loadtest.baselines import run_floor, run_pgqueuer
from daemon.loadtest.context import (
    Context,
    collect_database,
    finish_tasks,
    finished_at,
    mock_settings,
    monitor,
    read_latency,
)
from daemon.loadtest.fleet import DaemonFleet, DaemonSettings, chaos_loop
from daemon.loadtest.mockproc import (
    APP_SECRET,
    TOKEN,
    fetch_accepted,
    fetch_stats,
    start_mock,
)
from daemon.loadtest.options import LoadtestOptions
from daemon.loadtest.processes import free_port, kill_now, stop
from daemon.loadtest.progress import Progress
from daemon.loadtest.seeding import fresh_database, prepare_database, start_campaigns

WEBHOOK_PATH = "/webhook"
# With no receipts there is nothing to wait for after a lease expires: retry soon.
GRACE_S = "3"


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
    runners: dict[str, Runner] = {
        "wa-sender": run_wa_sender,
        "floor": run_floor,
        "pgqueuer": run_pgqueuer,
        "template-body": run_wa_sender_body,
        "no-replies": run_wa_sender_no_replies,
        "no-window": run_wa_sender_no_window,
        "no-caps": run_wa_sender_no_caps,
        "no-planning": run_wa_sender_no_planning,
        "receipts-off": run_wa_sender_receipts_off,
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
        backend: int = await conn.fetchval(query("backend_pid"))
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
        # The mock, not the Cloud API: rates above its 1,000 msg/s per number are allowed.
        "WA_SENDER_SENDER_MAX_RATE_PER_SECOND": repr(max(options.daemon_rate, 1000.0)),
        "WA_SENDER_SENDER_BURST": repr(options.daemon_burst),
        "WA_SENDER_SENDER_CONCURRENCY": str(options.effective_concurrency),
        "WA_SENDER_RECOVERY_GRACE_S": GRACE_S,
        "WA_SENDER_WEBHOOK_ENABLED": "true" if options.receipts else "false",
        "WA_SENDER_WEBHOOK_HOST": "127.0.0.1",
        "WA_SENDER_WEBHOOK_PATH": WEBHOOK_PATH,
        "WA_SENDER_LOGGING_FORMAT": "json",
        "WA_SENDER_LOGGING_LEVEL": "info",
    }
    if options.caps:
        env["WA_SENDER_LIMITS_PER_CONTACT"] = options.caps
    if options.receipts:
        env["WA_SENDER_WHATSAPP_APP_SECRET"] = APP_SECRET
        env["WA_SENDER_WHATSAPP_VERIFY_TOKEN"] = "loadtest-verify-token"
    for key, value in options.settings:
        section, _, name = key.partition(".")
        env[f"WA_SENDER_{section.upper()}_{name.upper()}"] = value
    return env


async def run_wa_sender_body(ctx: Context) -> dict[str, Any]:
    """The `template-body` system: wa-sender sending the body-only template."""
    return await run_wa_sender(ctx, system="template-body", template="body")


async def run_wa_sender_no_replies(ctx: Context) -> dict[str, Any]:
    """The `no-replies` system: wa-sender with the mock posting no inbound replies."""
    return await run_wa_sender(ctx, system="no-replies", replies=False)


async def run_wa_sender_no_window(ctx: Context) -> dict[str, Any]:
    """The `no-window` system: wa-sender without the send window of `--window`."""
    return await run_wa_sender(ctx, system="no-window", window=False)


async def run_wa_sender_receipts_off(ctx: Context) -> dict[str, Any]:
    """The `receipts-off` system: wa-sender with no status webhooks (what receipts cost)."""
    return await run_wa_sender(ctx, system="receipts-off", receipts=False)


async def run_wa_sender_no_caps(ctx: Context) -> dict[str, Any]:
    """The `no-caps` system: wa-sender without the frequency caps of `--caps`."""
    return await run_wa_sender(ctx, system="no-caps", caps=False)


async def run_wa_sender_no_planning(ctx: Context) -> dict[str, Any]:
    """The `no-planning` system: wa-sender without `--window` and `--caps`."""
    return await run_wa_sender(ctx, system="no-planning", window=False, caps=False)


async def run_wa_sender(
    ctx: Context,
    *,
    system: str = "wa-sender",
    template: str | None = None,
    replies: bool = True,
    window: bool = True,
    receipts: bool = True,
    caps: bool = True,
) -> dict[str, Any]:
    options = ctx.options
    if not caps:
        options = replace(options, caps=None, systems=("wa-sender",))
    if not receipts:
        options = replace(
            options, receipts=False, reply_rate=0.0, optout_rate=0.0, systems=("wa-sender",)
        )
    reply_rate = options.reply_rate if replies else 0.0
    template = options.template if template is None else template
    run_dir = ctx.log_dir / system
    run_dir.mkdir(parents=True, exist_ok=True)
    async with fresh_database(ctx.server_dsn) as dsn:
        ctx.progress.note(f"   seeding {options.contacts:,} contacts ({template} template)")
        seeded = time.monotonic()
        campaign_ids = await asyncio.wait_for(
            prepare_database(
                dsn,
                options.contacts,
                options.numbers,
                template,
                window=options.window if window else None,
            ),
            max(1.0, ctx.remaining_s()),
        )
        seed_s = time.monotonic() - seeded
        # Each daemon's webhook and /metrics on ports of their own.
        ports = tuple(free_port() for _ in range(options.daemons))
        metrics_ports = tuple(free_port() for _ in range(options.daemons))
        webhook_url = f"http://127.0.0.1:{ports[0]}{WEBHOOK_PATH}" if options.receipts else None
        mock = await start_mock(
            mock_settings(options, webhook_url, replies=replies), run_dir / "mock.log"
        )
        ctx.children.append(mock.child)
        sampler = ctx.sampler(mock, database=True)
        fleet = DaemonFleet(
            options.daemons,
            DaemonSettings(
                dsn, daemon_env(options, mock.base_url), ports, metrics_ports, options.probe
            ),
            run_dir,
            sampler,
        )
        stop_sampling = asyncio.Event()
        stop_chaos = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            await fleet.start(ctx.deadline)
            tasks.append(asyncio.create_task(sampler.run(stop_sampling), name="sampler"))
            pg_mark = await _pg_start(dsn)
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
                    system,
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
            postgres = await _pg_finish(dsn, pg_mark)
            rows, receipt_figures, last_change = await collect_database(
                dsn, campaign_ids, options.receipts
            )
            if receipt_figures is not None:
                receipt_figures.mock = {
                    k: int(v) for k, v in stats.get("receipts", {}).items() if k != "opted_out"
                }
            opt_outs = None
            if reply_rate > 0:
                opt_outs = await opt_out_figures(
                    dsn, stats.get("receipts", {}).get("opted_out", [])
                )
        finally:
            stop_chaos.set()
            stop_sampling.set()
            await finish_tasks(tasks)
            kill_now([c for c in fleet.children if c.running])
            await stop(mock.child, 10)
        sampler.sample()
    data = results.RunData(
        system=system,
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
        receipts=receipt_figures,
        postgres=postgres,
        kills=fleet.kills,
        throttled_at=throttled_times(fleet.log_files()),
        throttle_series=watch.throttle_series,
        opt_outs=opt_outs,
        notes={
            "seed_s": round(seed_s, 3),
            "daemon_exit_codes": exit_codes,
            "daemon_starts": len(fleet.children),
            "timed_out": watch.timed_out,
            "done_noticed_s": round(t_done - t0, 3),
            "webhook_url": webhook_url,
            "template": template,
        },
    )
    return results.build(data)


async def _pg_start(dsn: str) -> pgstats.PgMark:
    conn = await asyncpg.connect(dsn)
    try:
        return await pgstats.start(conn)
    finally:
        await conn.close()


async def _pg_finish(dsn: str, mark: pgstats.PgMark) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return await pgstats.finish(conn, mark)
    finally:
        await conn.close()


async def opt_out_figures(dsn: str, opted_out: Sequence[str]) -> dict[str, int]:
    """The opt-out invariants: every phone that replied STOP is suppressed, none got a
    message recorded after its opt-out was stored."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(query("loadtest_opt_outs"), list(opted_out))
    finally:
        await conn.close()
    assert row is not None
    return {"mock_opt_outs": len(set(opted_out)), **dict(row)}


def _crashed(tasks: Iterable[asyncio.Task[None]]) -> str | None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return f"{task.get_name()} failed: {task.exception()!r}"
    return None


async def _pending(conn: asyncpg.Connection, campaign_ids: Sequence[int], receipts: bool) -> int:
    left: int = await conn.fetchval(query("loadtest_pending_contacts"), campaign_ids)
    if receipts and left == 0:
        left = await pending_receipt_count(conn)
    if receipts and left == 0 and await inbound_pending(conn):
        left = 1  # replies stored, not applied yet (engine.inbound): the opt-outs not final
    return left


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
