"""A campaign sender built the way a user would on PgQueuer 1.6.0: the peer baseline.

One job per contact, enqueued in bulk (``Queries.enqueue`` with lists); one entrypoint that
builds the same body as wa-sender (same payload functions), POSTs it with one shared aiohttp
session (same connection limit), and updates the contact row (state sent + wamid). Transient
errors and 429s go back to the queue with ``RetryRequested`` (PgQueuer's own retry). Settings
follow PgQueuer's performance guide: a dedicated asyncpg connection for the QueueManager
(LISTEN), a pool for the handlers' writes, ``batch_size`` and ``max_concurrent_tasks`` tuned
(see docs/performance.md for the values tried), drain mode to stop when the queue is empty.

    python benchmarks/pgqueuer_baseline.py enqueue --campaign ID ...
    python benchmarks/pgqueuer_baseline.py work --campaign ID ... --base-url URL [...]

The database comes from DATABASE_URL (the harness creates it and seeds the contacts);
``wa-sender loadtest --compare pgqueuer`` runs both steps and measures the worker like the
daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

from daemon.core.payload import (
    Template,
    build_template_message,
    encode_body,
    encode_callback_data,
)
from daemon.engine import eventloop
from daemon.loadtest.latency import SecondlyRecorder
from daemon.loadtest.options import add_measured_arguments

ENTRYPOINT = "send_template"
ENQUEUE_CHUNK = 10_000
API_VERSION = "v23.0"
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

_CONTACTS = """
SELECT id, campaign_id, phone, params::text AS params FROM contacts
WHERE campaign_id = ANY($1::bigint[]) AND state = 'initial'
ORDER BY id
"""
_CAMPAIGNS = """
SELECT id, template_name, template_language, template_params, phone_number_id
FROM campaigns WHERE id = ANY($1::bigint[])
"""
_MARK_SENT = """
UPDATE contacts
SET state = 'sent', wamid = $2, wa_id = $3, message_status = $4, attempts = attempts + 1,
    claimed_at = $5, sent_at = now(), updated_at = now()
WHERE id = $1
"""


async def enqueue(dsn: str, campaign_ids: list[int]) -> dict[str, Any]:
    """Install PgQueuer's schema if missing, then one job per initial contact, in bulk."""
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
        started = time.monotonic()
        rows = await conn.fetch(_CONTACTS, campaign_ids)
        for start in range(0, len(rows), ENQUEUE_CHUNK):
            chunk = rows[start : start + ENQUEUE_CHUNK]
            payloads: list[bytes | None] = [
                json.dumps(
                    {
                        "contact_id": r["id"],
                        "campaign_id": r["campaign_id"],
                        "to": r["phone"],
                        "params": json.loads(r["params"]),
                    }
                ).encode()
                for r in chunk
            ]
            await queries.enqueue([ENTRYPOINT] * len(chunk), payloads, [0] * len(chunk))
        return {"enqueued": len(rows), "enqueue_s": round(time.monotonic() - started, 3)}
    finally:
        await conn.close()


async def work(args: argparse.Namespace, dsn: str, recorder: SecondlyRecorder) -> dict[str, Any]:
    counts = {"sent": 0, "retried": 0, "refused": 0}
    token = os.environ.get("WA_SENDER_WHATSAPP_ACCESS_TOKEN", "test-token")
    prefix = f"{args.base_url.rstrip('/')}/{API_VERSION}/"
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=args.pool_size)
    qm_conn = await asyncpg.connect(dsn)  # the QueueManager's own connection (LISTEN)
    connector = aiohttp.TCPConnector(limit=args.max_connections, keepalive_timeout=60)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=args.request_timeout_s),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        campaigns = {
            r["id"]: (
                Template(r["template_name"], r["template_language"], tuple(r["template_params"])),
                r["phone_number_id"],
            )
            for r in await pool.fetch(_CAMPAIGNS, args.campaign)
        }
        pgq = PgQueuer(AsyncpgDriver(qm_conn), resources={"http": session, "db": pool})

        @pgq.entrypoint(ENTRYPOINT)
        async def send_template(job: Job) -> None:
            started = time.time()
            assert job.payload is not None
            data = json.loads(job.payload)
            template, phone_number_id = campaigns[data["campaign_id"]]
            callback = encode_callback_data(data["campaign_id"], data["contact_id"], 1)
            body = encode_body(
                build_template_message(template, data["to"], data["params"], callback)
            )
            began = time.monotonic()
            async with session.post(f"{prefix}{phone_number_id}/messages", data=body) as response:
                payload = await response.read()
                status = response.status
            recorder.observe((time.monotonic() - began) * 1000.0, time.time())
            if status in TRANSIENT_STATUSES:
                counts["retried"] += 1
                raise RetryRequested(delay=timedelta(seconds=1), reason=f"HTTP {status}")
            if status != 200:
                counts["refused"] += 1
                raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
            answer = json.loads(payload)
            message = answer["messages"][0]
            async with pool.acquire() as conn:
                await conn.execute(
                    _MARK_SENT,
                    data["contact_id"],
                    message["id"],
                    answer["contacts"][0]["wa_id"],
                    message.get("message_status"),
                    _utc(started),
                )
            counts["sent"] += 1

        started_at = time.time()
        await pgq.qm.run(
            batch_size=args.batch_size,
            max_concurrent_tasks=args.max_tasks or None,
            mode=QueueExecutionMode.drain,
            dequeue_timeout=timedelta(seconds=1),
        )
        return {**counts, "started_at": started_at, "finished_at": time.time()}
    finally:
        await session.close()
        await qm_conn.close()
        await pool.close()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("enqueue", help="install PgQueuer and enqueue one job per contact")
    p.add_argument("--campaign", type=int, action="append", required=True)
    p = sub.add_parser("work", help="drain the queue: send every job, update its contact")
    p.add_argument("--campaign", type=int, action="append", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--max-tasks", type=int, default=400, help="max_concurrent_tasks (0: none)")
    p.add_argument("--pool-size", type=int, default=10)
    # As PgQueuer's own CLI (`pgq run`): uvloop when installed (--event-loop auto). The harness
    # passes the daemon's choice, so both run on the same loop.
    add_measured_arguments(p)
    args = parser.parse_args(argv)
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        print("pgqueuer_baseline: set DATABASE_URL", file=sys.stderr)
        return 2
    if args.step == "enqueue":
        result = asyncio.run(enqueue(dsn, args.campaign))
    else:
        out = args.latency_out.open("a", encoding="utf-8") if args.latency_out else None
        recorder = SecondlyRecorder(out)
        try:
            result = eventloop.run(work(args, dsn, recorder), args.event_loop)
        finally:
            recorder.close()
            if out is not None:
                out.close()
    text = json.dumps(result)
    if getattr(args, "result", None):
        args.result.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
