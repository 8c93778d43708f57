"""Receipts benchmark: status webhooks ingested and applied per second.

The webhook server and the reconciler run in this process exactly as `wa-sender webhook`
wires them; signed 100-status POSTs come from concurrent posters in a separate process (as
Meta's would come from outside). Contacts are seeded as sent, each then gets a delivered and
a read status, shuffled. Reports ingest and apply rates and webhook response percentiles.
Uses DATABASE_URL if set (a scratch database is created there), else a throwaway embedded
PostgreSQL.

    python benchmarks/receipts_bench.py [--contacts N] [--batch 100] [--posters 16]
                                        [--json out/receipts_bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from daemon.config import Config, Secret, with_overrides
from daemon.db.database import with_database_name
from daemon.db.embedded import EmbeddedPostgres
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect, open_pool
from daemon.engine.reconciler import Reconciler, reconciler_tasks
from daemon.engine.web import STATS_KEY, WebDeps, build_web_app, serve_web_app
from daemon.logs import configure_logging
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign

SECRET = "bench-app-secret"
T0 = 1_750_000_000


# -- the posters (child process) -------------------------------------------------------------


def build_bodies(contacts: int, batch: int, seed: int) -> list[bytes]:
    """delivered + read for every contact, shuffled, in bodies of `batch` statuses."""
    rng = random.Random(seed)
    statuses = [(i, kind) for i in range(1, contacts + 1) for kind in ("delivered", "read")]
    rng.shuffle(statuses)
    bodies = []
    for start in range(0, len(statuses), batch):
        chunk = [
            {
                "id": f"wamid.bench{i}",
                "status": kind,
                "timestamp": str(T0 + i % 1000 + (5 if kind == "read" else 0)),
                "recipient_id": f"1555{i:07d}",
                "conversation": {"id": f"{i:032x}", "origin": {"type": "marketing"}},
                "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing"},
            }
            for i, kind in statuses[start : start + batch]
        ]
        document = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "1000001",
                                },
                                "statuses": chunk,
                            },
                        }
                    ],
                }
            ],
        }
        bodies.append(json.dumps(document, separators=(",", ":")).encode())
    return bodies


async def post_all(url: str, bodies: list[bytes], posters: int, rate: float) -> dict[str, Any]:
    """POST every body with `posters` concurrent clients; with `rate` (statuses/s, of 100-status
    bodies) each POST waits for its slot in a steady schedule, else as fast as answered."""
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    queue = list(reversed(list(enumerate(bodies))))
    per_body_s = (
        0.0
        if rate <= 0
        else len(json.loads(bodies[0])["entry"][0]["changes"][0]["value"]["statuses"]) / rate
    )
    connector = aiohttp.TCPConnector(limit=posters)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        origin = loop.time()

        async def poster() -> None:
            while queue:
                index, body = queue.pop()
                if per_body_s:
                    await asyncio.sleep(max(0.0, origin + index * per_body_s - loop.time()))
                headers = {SIGNATURE_HEADER: sign(body, SECRET), "Content-Type": "application/json"}
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - started)
                codes[resp.status] += 1
                if resp.status != 200:
                    queue.append((index, body))  # like Meta: retried until acknowledged

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(posters)))
        seconds = time.perf_counter() - started
    return {"latencies": latencies, "codes": dict(codes), "seconds": seconds}


def poster_process(url: str, args: dict[str, Any], ready: Any, go: Any, results: Any) -> None:
    bodies = build_bodies(args["contacts"], args["batch"], args["seed"])
    ready.set()
    go.wait()
    results.put(asyncio.run(post_all(url, bodies, args["posters"], args["rate"])))


# -- the server side (this process) ----------------------------------------------------------


async def seed(dsn: str, contacts: int) -> None:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        campaign_id = await conn.fetchval(
            "INSERT INTO campaigns (name, template_name, template_language, phone_number_id,"
            " state) VALUES ('bench', 'spring_sale', 'en_US', '1000001', 'running') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO contacts (campaign_id, phone, state, wamid, attempts, sent_at)"
            " SELECT $1, '1555' || lpad(g::text, 7, '0'), 'sent', 'wamid.bench' || g, 1,"
            " to_timestamp($3) FROM generate_series(1, $2) g",
            campaign_id,
            contacts,
            T0,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    await seed(dsn, args.contacts)
    config: Config = with_overrides(
        Config(),
        whatsapp={"app_secret": Secret(SECRET)},
        webhook={"host": "127.0.0.1", "port": 0, "reconcile_batch": args.reconcile_batch},
    )
    total = args.contacts * 2
    async with open_pool(dsn, min_size=4, max_size=10) as pool:
        reconcilers = [Reconciler(pool, config.webhook) for _ in range(args.reconcilers)]
        tasks = [
            asyncio.create_task(coro)
            for reconciler in reconcilers
            for coro in reconciler_tasks(reconciler, dsn).values()
        ]
        app = build_web_app(WebDeps(config, pool))
        try:
            async with serve_web_app(app, "127.0.0.1", 0) as base_url:
                context = multiprocessing.get_context("spawn")
                ready, go, results = context.Event(), context.Event(), context.Queue()
                child_args = {
                    "contacts": args.contacts,
                    "batch": args.batch,
                    "posters": args.posters,
                    "rate": args.rate,
                    "seed": 7,
                }
                child = context.Process(
                    target=poster_process,
                    args=(base_url + config.webhook.path, child_args, ready, go, results),
                )
                child.start()
                await asyncio.to_thread(ready.wait)
                started = time.perf_counter()
                go.set()
                applied_s = await wait_applied(pool, total, started)
                posted = await asyncio.to_thread(results.get)
                await asyncio.to_thread(child.join)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        async with pool.acquire() as conn:
            states = dict(await conn.fetch("SELECT state::text, count(*) FROM contacts GROUP BY 1"))
            receipts = dict(
                await conn.fetch(
                    "SELECT processing_state, count(*) FROM status_receipts GROUP BY 1"
                )
            )
            server_version = await conn.fetchval("SHOW server_version")
    latencies_ms = sorted(x * 1000 for x in posted["latencies"])
    ingest_s = posted["seconds"]
    stats = reconcilers[0].stats
    return {
        "statuses": total,
        "contacts": args.contacts,
        "batch": args.batch,
        "posters": args.posters,
        "target_rate_per_s": args.rate or None,
        "reconcilers": args.reconcilers,
        "reconcile_batch": args.reconcile_batch,
        "posts": len(latencies_ms),
        "responses": posted["codes"],
        "server_responses": dict(app[STATS_KEY].responses),
        "ingest_s": round(ingest_s, 3),
        "ingested_per_s": round(total / ingest_s),
        "applied_s": round(applied_s, 3),
        "applied_per_s": round(total / applied_s),
        "latency_ms": {
            "p50": round(percentile(latencies_ms, 50), 2),
            "p90": round(percentile(latencies_ms, 90), 2),
            "p99": round(percentile(latencies_ms, 99), 2),
            "max": round(latencies_ms[-1], 2),
            "mean": round(statistics.fmean(latencies_ms), 2),
        },
        "contact_states": states,
        "receipts": receipts,
        "reconciler_batches": sum(r.stats.batches for r in reconcilers),
        "reconciler_busy": sum(r.stats.busy for r in reconcilers),
        "reconciler0_applied": stats.applied,
        "postgres": server_version,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


async def wait_applied(pool: asyncpg.Pool, total: int, started: float) -> float:
    """Seconds from the first POST until every status is stored and none is pending."""
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS stored,"
                " count(*) FILTER (WHERE processing_state = 'pending') AS pending"
                " FROM status_receipts"
            )
        if row["stored"] >= total and row["pending"] == 0:
            return time.perf_counter() - started
        await asyncio.sleep(0.02)


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * pct / 100
    low, high = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (k - low)


@contextmanager
def database() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if not url:
        with EmbeddedPostgres() as server:
            yield server.dsn
        return
    name = f"wa_receipts_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database_name(url, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000, help="2 statuses each")
    parser.add_argument("--batch", type=int, default=100, help="statuses per POST")
    parser.add_argument("--posters", type=int, default=16, help="concurrent POSTs")
    parser.add_argument(
        "--rate", type=float, default=0, help="pace POSTs to this many statuses/s (0: flat out)"
    )
    parser.add_argument("--reconcilers", type=int, default=1)
    parser.add_argument("--reconcile-batch", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=Path("out/receipts_bench.json"))
    args = parser.parse_args()
    configure_logging("console", os.environ.get("BENCH_LOG_LEVEL", "warning"))
    with database() as dsn:
        result = asyncio.run(measure(dsn, args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lat = result["latency_ms"]
    print(
        f"{result['statuses']:,} statuses in {result['posts']:,} POSTs of {args.batch}, "
        f"{args.posters} posters{f' paced at {args.rate:,.0f}/s' if args.rate else ''}, "
        f"{args.reconcilers} reconciler(s), PostgreSQL "
        f"{result['postgres']}, {result['cpus']} CPUs\n"
        f"  ingested: {result['ingested_per_s']:,} statuses/s ({result['ingest_s']} s)\n"
        f"  applied:  {result['applied_per_s']:,} statuses/s ({result['applied_s']} s, "
        f"all stored and applied)\n"
        f"  webhook response ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  "
        f"max {lat['max']}\n"
        f"  responses {result['responses']}; contacts {result['contact_states']}; "
        f"receipts {result['receipts']}\n"
        f"  JSON: {args.json}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
