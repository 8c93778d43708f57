"""Report benchmark: every SQL report on a 1,000,000-contact table, for one campaign and for all.

Builds the data with INSERT ... SELECT generate_series (a few seconds), then for each report
and scope prints the median time of `run_report` and the plan's top node and buffers, and
writes the EXPLAIN (ANALYZE, BUFFERS) plans to JSON. Uses DATABASE_URL if set (in a database
of its own, dropped afterwards), else a throwaway embedded PostgreSQL.
    python benchmarks/reports_explain.py [--contacts N] [--json out/reports_explain.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from daemon.db.database import with_database_name
from daemon.db.embedded import EmbeddedPostgres
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect
from daemon.ops.reports import available_reports, report_text, run_report, to_parameterised

CAMPAIGNS = 10
BIG_SHARE = 0.5  # the campaign measured alone holds half the contacts

# Finished campaigns sent at 80 msg/s: states from a realistic mix, receipt delays of seconds
# (delivered) to hours (read). $1 campaigns, $2 contacts of the first (big) one, $3 contacts.
CAMPAIGNS_SQL = """
INSERT INTO campaigns (name, template_name, template_language, phone_number_id, state,
                       started_at, finished_at)
SELECT 'bench ' || g, 'promo', 'en_US', '1000001', 'finished',
       timestamptz '2025-03-01 08:00+00', timestamptz '2025-03-01 12:00+00'
FROM generate_series(1, $1::int) AS g
"""
CONTACTS_SQL = """
INSERT INTO contacts (campaign_id, phone, wa_id, params, state, attempts, wamid, error_code,
                      error_title, invalid_reason, sent_at, delivered_at, read_at, failed_at)
SELECT k.id, x.phone,
       CASE WHEN x.accepted THEN x.phone END,
       jsonb_build_object('first_name', 'Guest' || x.i),
       x.state::contact_state,
       CASE WHEN x.state = 'invalid_record' THEN 0 ELSE 1 END,
       CASE WHEN x.accepted THEN 'wamid.bench' || x.i END,
       CASE x.state WHEN 'sending_failed' THEN 131026 WHEN 'delivery_failed' THEN 131049
                    WHEN 'error' THEN 131000 END,
       CASE x.state WHEN 'sending_failed' THEN 'Message undeliverable'
                    WHEN 'delivery_failed' THEN 'Healthy ecosystem engagement'
                    WHEN 'error' THEN 'Something went wrong' END,
       CASE WHEN x.state = 'invalid_record' THEN 'invalid_length' END,
       CASE WHEN x.accepted THEN x.sent END,
       CASE WHEN x.state IN ('delivered', 'read') THEN x.sent + x.delay END,
       CASE WHEN x.state = 'read' THEN x.sent + x.delay + x.read_delay END,
       CASE WHEN x.state IN ('sending_failed', 'delivery_failed', 'error') THEN x.sent END
FROM (
    SELECT i, state,
           '1555' || lpad(i::text, 8, '0') AS phone,
           CASE WHEN i <= $2::int THEN 1 ELSE 2 + i % ($1::int - 1) END AS campaign_no,
           state IN ('sent', 'delivered', 'read', 'delivery_failed') AS accepted,
           timestamptz '2025-03-01 08:00+00' + make_interval(secs => (i % 288000) / 80.0) AS sent,
           make_interval(secs => 0.5 + random() * 30) AS delay,
           make_interval(secs => random() * 7200) AS read_delay
    FROM (
        SELECT i, CASE WHEN r < 0.01 THEN 'invalid_record'
                       WHEN r < 0.03 THEN 'sending_failed'
                       WHEN r < 0.04 THEN 'error'
                       WHEN r < 0.06 THEN 'delivery_failed'
                       WHEN r < 0.16 THEN 'sent'
                       WHEN r < 0.56 THEN 'delivered'
                       ELSE 'read' END AS state
        FROM (SELECT i, random() AS r FROM generate_series(1, $3::int) AS i) AS drawn
    ) AS s
) AS x
JOIN campaigns k ON k.name = 'bench ' || x.campaign_no
ORDER BY x.campaign_no, x.i
"""
# One receipt per accepted message (its latest status), plus 0.1 % orphans. $1 contacts.
RECEIPTS_SQL = """
INSERT INTO status_receipts (received_at, wamid, status, status_at, recipient_id,
                             phone_number_id, raw, processing_state, contact_id, processed_at)
SELECT coalesce(c.read_at, c.delivered_at, c.sent_at), c.wamid,
       CASE c.state WHEN 'read' THEN 'read' WHEN 'delivered' THEN 'delivered'
                    WHEN 'delivery_failed' THEN 'failed' ELSE 'sent' END,
       coalesce(c.read_at, c.delivered_at, c.sent_at), c.wa_id, '1000001',
       jsonb_build_object('id', c.wamid, 'recipient_id', c.wa_id), 'applied', c.id,
       coalesce(c.read_at, c.delivered_at, c.sent_at)
FROM contacts c
WHERE c.wamid IS NOT NULL
UNION ALL
SELECT timestamptz '2025-03-01 09:00+00', 'wamid.orphan' || g, 'delivered', NULL,
       '1999' || g, '1000001', '{}'::jsonb, 'orphan', NULL, NULL
FROM generate_series(1, $1::int / 1000) AS g
"""


async def seed(conn: asyncpg.Connection, contacts: int) -> dict[str, Any]:
    big = int(contacts * BIG_SHARE)
    started = time.perf_counter()
    await conn.execute("SELECT setseed(0.42)")
    await conn.execute(CAMPAIGNS_SQL, CAMPAIGNS)
    await conn.execute(CONTACTS_SQL, CAMPAIGNS, big, contacts)
    await conn.execute(RECEIPTS_SQL, contacts)
    seeded_s = time.perf_counter() - started
    started = time.perf_counter()
    await conn.execute("VACUUM ANALYZE")
    return {
        "contacts": await conn.fetchval("SELECT count(*) FROM contacts"),
        "status_receipts": await conn.fetchval("SELECT count(*) FROM status_receipts"),
        "campaigns": CAMPAIGNS,
        "big_campaign_contacts": big,
        "seed_s": round(seeded_s, 2),
        "vacuum_analyze_s": round(time.perf_counter() - started, 2),
        "contacts_mb": round(
            await conn.fetchval("SELECT pg_total_relation_size('contacts')") / 2**20, 1
        ),
    }


def _top(plan: dict[str, Any]) -> str:
    node = plan["Plan"]
    while node.get("Plans") and node["Node Type"] in (
        "Sort",
        "Incremental Sort",
        "Limit",
        "Result",
        "Gather Merge",
        "Gather",
        "Subquery Scan",
        "WindowAgg",
    ):
        node = node["Plans"][0]
    return node["Node Type"]


def _scans(node: dict[str, Any]) -> list[str]:
    found = []
    if "Relation Name" in node:
        index = f" using {node['Index Name']}" if "Index Name" in node else ""
        found.append(f"{node['Node Type']} on {node['Relation Name']}{index}")
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


async def measure(
    conn: asyncpg.Connection, name: str, campaign_id: int | None, repeat: int
) -> dict[str, Any]:
    sql = to_parameterised(report_text(name))
    statement = await conn.prepare(sql)
    args = [campaign_id] if statement.get_parameters() else []
    if not args and campaign_id is not None:
        return {"report": name, "scope": "one campaign", "skipped": "not per campaign"}
    # The connection decodes json: EXPLAIN's FORMAT JSON comes back as a list.
    plan_json = (await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args))[0]
    plan_text = "\n".join(
        r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    )
    times = []
    rows = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = await run_report(conn, name, campaign_id)
        times.append(time.perf_counter() - started)
        rows = len(result.rows)
    plan = plan_json["Plan"]
    return {
        "report": name,
        "scope": "all campaigns" if campaign_id is None else "one campaign",
        "rows": rows,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "min_ms": round(min(times) * 1000, 1),
        "execution_ms": round(plan_json["Execution Time"], 1),
        "planning_ms": round(plan_json["Planning Time"], 2),
        "top_node": _top(plan_json),
        "scans": sorted(set(_scans(plan))),
        "shared_hit_blocks": plan.get("Shared Hit Blocks", 0),
        "shared_read_blocks": plan.get("Shared Read Blocks", 0),
        "temp_written_blocks": plan.get("Temp Written Blocks", 0),
        "plan": plan_text,
    }


async def run(server_dsn: str, contacts: int, repeat: int) -> dict[str, Any]:
    name = f"wa_reports_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await connect(with_database_name(server_dsn, name))
        try:
            await apply_migrations(conn)
            data = await seed(conn, contacts)
            big_id = await conn.fetchval("SELECT min(id) FROM campaigns")
            results = []
            for report in available_reports():
                for scope in (big_id, None):
                    results.append(await measure(conn, report, scope, repeat))
                    r = results[-1]
                    if "skipped" not in r:
                        print(
                            f"{r['report']:<18} {r['scope']:<14} {r['median_ms']:>9.1f} ms"
                            f"  rows {r['rows']:>6}  {', '.join(r['scans'])}"
                            f"  (hit {r['shared_hit_blocks']}, read {r['shared_read_blocks']},"
                            f" temp {r['temp_written_blocks']})",
                            flush=True,
                        )
            server_version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"data": data, "server_version": server_version, "repeat": repeat, "reports": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="out/reports_explain.json")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if url:
        figures = asyncio.run(run(url, args.contacts, args.repeat))
    else:
        with EmbeddedPostgres() as server:
            figures = asyncio.run(run(server.dsn, args.contacts, args.repeat))
    data = figures["data"]
    print(
        f"{data['contacts']:,} contacts ({data['contacts_mb']} MB), "
        f"{data['status_receipts']:,} receipts, seeded in {data['seed_s']} s"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
