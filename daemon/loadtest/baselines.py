"""The systems wa-sender is compared with, run and measured like the daemon: the floor (no
database: the most the machine pushes through the mock) and a PgQueuer-based sender
(``benchmarks/pgqueuer_baseline.py``: what a user would build on PgQueuer 1.6.0).

Each runs as its own process against a fresh mock, watched by the same sampler. Neither has a
webhook, so the mock posts no receipts for them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from daemon.db.sql import query
from daemon.loadtest import results
from daemon.loadtest.context import (
    Context,
    collect_database,
    finish_tasks,
    finished_at,
    mock_settings,
    monitor,
    read_latency,
)
from daemon.loadtest.mockproc import TOKEN, fetch_accepted, fetch_stats, start_mock
from daemon.loadtest.options import LoadtestError, measured_flags
from daemon.loadtest.processes import clean_env, spawn, stop, try_reap, wait_exit
from daemon.loadtest.seeding import fresh_database, prepare_database

BASELINE = Path(__file__).resolve().parents[2] / "benchmarks" / "pgqueuer_baseline.py"
# PgQueuer's documented knobs, tuned with benchmarks/pgqueuer_tuning.py (docs/performance.md):
# jobs are short, so big batches (fewer dequeue round trips); a cap of 2 x batch (PgQueuer's
# minimum) keeps one batch running while the next is fetched. Larger caps only queue work
# behind the HTTP connection limit; no cap picks the whole queue at once and requests time out.
PGQUEUER_BATCH_SIZE = 200
PGQUEUER_MAX_TASKS = 400


async def run_floor(ctx: Context) -> dict[str, Any]:
    options = ctx.options
    run_dir = ctx.log_dir / "floor"
    run_dir.mkdir(parents=True, exist_ok=True)
    mock = await start_mock(mock_settings(options), run_dir / "mock.log")
    ctx.children.append(mock.child)
    sampler = ctx.sampler(mock, database=False)
    latency_path = run_dir / "floor.latency.jsonl"
    result_path = run_dir / "floor.result.json"
    argv = [
        sys.executable,
        "-m",
        "daemon.loadtest.floor",
        "--base-url",
        mock.base_url,
        "--contacts",
        str(options.contacts),
        "--numbers",
        str(options.numbers),
        "--concurrency",
        str(options.effective_concurrency),
        *measured_flags(options, latency_path, result_path),
    ]
    env = clean_env({"WA_SENDER_WHATSAPP_ACCESS_TOKEN": TOKEN})
    stop_sampling = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        child = _spawn_measured(
            ctx, sampler, stop_sampling, tasks, "floor", argv, env, run_dir / "floor.log"
        )
        t0 = time.time()
        watch, t_done, info, stats, accepted = await _watch_until_exit(
            ctx, mock, "floor", t0, child, pending=None, dsn=None, stop_timeout_s=10
        )
    finally:
        stop_sampling.set()
        await finish_tasks(tasks)
        await stop(mock.child, 10)
    sampler.sample()
    floor_result = _read_json(result_path)
    t_go = float(floor_result.get("started_at", t0))
    t_end = finished_at(t_done, floor_result.get("finished_at"), watch.completed)
    data = results.RunData(
        system="floor",
        contacts=options.contacts,
        t0=t_go,
        t_done=t_end,
        completed=watch.completed and info.returncode == 0,
        accepted=accepted,
        mock_stats=stats,
        sampler=sampler,
        latency=read_latency([latency_path]),
        throttle_series=watch.throttle_series,
        notes={"exit_code": info.returncode, "floor": floor_result, "timed_out": watch.timed_out},
    )
    return results.build(data)


async def run_pgqueuer(ctx: Context) -> dict[str, Any]:
    options = ctx.options
    if not BASELINE.exists():
        raise LoadtestError(f"the PgQueuer baseline is not here: {BASELINE} (a source checkout)")
    if importlib.util.find_spec("pgqueuer") is None:
        raise LoadtestError("PgQueuer is not installed: pip install 'wa-sender[bench]'")
    run_dir = ctx.log_dir / "pgqueuer"
    run_dir.mkdir(parents=True, exist_ok=True)
    batch_size = options.pgqueuer_batch_size or PGQUEUER_BATCH_SIZE
    max_tasks = options.pgqueuer_max_tasks
    if max_tasks is None:
        max_tasks = PGQUEUER_MAX_TASKS
    async with fresh_database(ctx.server_dsn) as dsn:
        ctx.progress.note(f"   seeding {options.contacts:,} contacts")
        campaign_ids = await prepare_database(dsn, options.contacts, options.numbers)
        campaigns = [arg for cid in campaign_ids for arg in ("--campaign", str(cid))]
        env = clean_env({"DATABASE_URL": dsn, "WA_SENDER_WHATSAPP_ACCESS_TOKEN": TOKEN})
        ctx.progress.note("   installing PgQueuer and enqueueing one job per contact")
        enqueued_at = time.monotonic()
        enqueue = spawn(
            "pgqueuer-enqueue",
            [sys.executable, str(BASELINE), "enqueue", *campaigns],
            env=env,
            log_path=run_dir / "enqueue.log",
        )
        ctx.children.append(enqueue)
        done = await wait_exit(enqueue, max(1.0, ctx.remaining_s()))
        if done is None or done.returncode != 0:
            await stop(enqueue, 5)
            raise LoadtestError(f"PgQueuer enqueue failed (see {enqueue.log_path})")
        enqueue_s = time.monotonic() - enqueued_at

        mock = await start_mock(mock_settings(options), run_dir / "mock.log")
        ctx.children.append(mock.child)
        sampler = ctx.sampler(mock, database=True)
        latency_path = run_dir / "worker.latency.jsonl"
        result_path = run_dir / "worker.result.json"
        argv = [
            sys.executable,
            str(BASELINE),
            "work",
            *campaigns,
            "--base-url",
            mock.base_url,
            "--batch-size",
            str(batch_size),
            "--max-tasks",
            str(max_tasks),
            *measured_flags(options, latency_path, result_path),
        ]
        stop_sampling = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            worker = _spawn_measured(
                ctx,
                sampler,
                stop_sampling,
                tasks,
                "pgqueuer-worker",
                argv,
                env,
                run_dir / "worker.log",
            )
            t0 = time.time()

            async def pending(conn: asyncpg.Connection) -> int:
                left: int = await conn.fetchval(query("loadtest_pending_contacts"), campaign_ids)
                return left

            watch, t_done, info, stats, accepted = await _watch_until_exit(
                ctx, mock, "pgqueuer", t0, worker, pending=pending, dsn=dsn, stop_timeout_s=30
            )
            rows, _, last_change = await collect_database(dsn, campaign_ids, receipts=False)
            rows.attempt_knowledge = None  # its worker writes no attempt history: heuristic
        finally:
            stop_sampling.set()
            await finish_tasks(tasks)
            await stop(mock.child, 10)
        sampler.sample()
    worker_result = _read_json(result_path)
    data = results.RunData(
        system="pgqueuer",
        contacts=options.contacts,
        t0=float(worker_result.get("started_at", t0)),
        t_done=finished_at(t_done, last_change, watch.completed),
        completed=watch.completed,
        accepted=accepted,
        mock_stats=stats,
        sampler=sampler,
        latency=read_latency([latency_path]),
        rows=rows,
        throttle_series=watch.throttle_series,
        notes={
            "enqueue_s": round(enqueue_s, 3),
            "batch_size": batch_size,
            "max_concurrent_tasks": max_tasks,
            "exit_code": info.returncode,
            "worker": worker_result,
            "timed_out": watch.timed_out,
        },
    )
    return results.build(data)


def _spawn_measured(
    ctx: Context,
    sampler: Any,
    stop_sampling: asyncio.Event,
    tasks: list[asyncio.Task[None]],
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
) -> Any:
    """Start the baseline's sending process, measured as "sender" like the daemon, and the
    sampler (added to `tasks`, stopped by `stop_sampling`)."""
    child = spawn(name, argv, env=env, log_path=log_path)
    ctx.children.append(child)
    sampler.watch_child("sender", child)
    tasks.append(asyncio.create_task(sampler.run(stop_sampling), name="sampler"))
    return child


async def _watch_until_exit(
    ctx: Context,
    mock: Any,
    name: str,
    t0: float,
    child: Any,
    *,
    pending: Any,
    dsn: str | None,
    stop_timeout_s: float,
) -> tuple[Any, float, Any, Any, Any]:
    """Follow a baseline process until it exits by itself; then the mock's counters and log."""
    async with aiohttp.ClientSession() as session:
        watch = await monitor(
            ctx,
            session,
            mock,
            name,
            t0,
            pending=pending,
            dsn=dsn,
            crashed=lambda: None,
            finished=lambda: try_reap(child) is not None,
        )
        t_done = time.time()
        info = await stop(child, stop_timeout_s)
        stats = await fetch_stats(session, mock.base_url)
        accepted = await fetch_accepted(session, mock.base_url)
    return watch, t_done, info, stats, accepted


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
