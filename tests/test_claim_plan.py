"""The hot claim query uses its partial index, even on a half-drained campaign whose
statistics still say every contact is claimable (right after a bulk import)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg

from daemon.core.payload import Template
from daemon.db.campaigns import create_campaign
from daemon.db.sender_store import NO_WINDOW
from daemon.db.sql import query


async def test_claim_walks_contacts_claimable_from_the_cursor(conn: asyncpg.Connection) -> None:
    cid = await create_campaign(conn, "c", Template("t", "en", ()), "1")
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone) SELECT $1, (15550000000 + g)::text"
        " FROM generate_series(1, 50000) g",
        cid,
    )
    await conn.execute("ANALYZE contacts")  # statistics taken while everything is claimable
    await conn.execute(
        "UPDATE contacts SET state = 'sent', attempts = 1 WHERE id <= (SELECT min(id) + 30000 FROM contacts)"
    )
    cursor = await conn.fetchval("SELECT min(id) + 30000 FROM contacts")
    with_cursor = await _claim_scan_buffers(conn, cid, cursor)
    from_start = await _claim_scan_buffers(conn, cid, 0)
    # From the cursor the scan reads a few pages; from the start it walks every sent contact.
    assert with_cursor * 10 < from_start, (with_cursor, from_start)
    assert with_cursor < 100


async def _claim_scan_buffers(conn: asyncpg.Connection, campaign_id: int, after_id: int) -> int:
    """Pages the index scan of the claim's inner select (finding claimable contacts) reads."""
    tr = conn.transaction()
    await tr.start()
    try:
        plan = [
            r[0]
            for r in await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + query("claim_contacts"),
                campaign_id,
                "d",
                60.0,
                500,
                after_id,
                datetime.now(UTC),
                NO_WINDOW,
            )
        ]
    finally:
        await tr.rollback()
    init = next(i for i, line in enumerate(plan) if "InitPlan" in line)
    start = next(i for i in range(init, len(plan)) if "Scan" in plan[i])
    buffers = next(line for line in plan[start:] if "Buffers: shared" in line)
    return int(re.search(r"hit=(\d+)", buffers).group(1))  # type: ignore[union-attr]


async def test_windowed_claim_uses_contacts_claimable_window_past_the_waiting_contacts(
    conn: asyncpg.Connection,
) -> None:
    """30,000 contacts waiting for their window ahead of 20,000 open ones (by id): the claim
    reads the index from where open contacts start, not every waiting row."""
    cid = await create_campaign(conn, "w", Template("t", "en", ()), "1")
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone, not_before, open_until)"
        " SELECT $1, (15550000000 + g)::text,"
        "        CASE WHEN g <= 30000 THEN $2::timestamptz + interval '6 hours' ELSE $2 END,"
        "        $2::timestamptz + interval '8 hours'"
        " FROM generate_series(1, 50000) g",
        cid,
        now,
    )
    await conn.execute("ANALYZE contacts")
    plan, buffers, claimed = await _windowed_claim(conn, cid, now)
    assert "Index Scan using contacts_claimable_window" in plan, plan
    assert "Sort" not in plan.split("InitPlan")[1], plan  # walked in index order
    assert claimed == 500
    assert buffers < 100, (buffers, plan)


async def _windowed_claim(
    conn: asyncpg.Connection, campaign_id: int, now: datetime
) -> tuple[str, int, int]:
    tr = conn.transaction()
    await tr.start()
    try:
        lines = [
            r[0]
            for r in await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + query("claim_contacts"),
                campaign_id,
                "d",
                60.0,
                500,
                0,
                now,
                NO_WINDOW,
            )
        ]
    finally:
        await tr.rollback()
    plan = "\n".join(lines)
    init = next(i for i, line in enumerate(lines) if "InitPlan" in line)
    start = next(i for i in range(init, len(lines)) if "Scan" in lines[i])
    buffers = next(line for line in lines[start:] if "Buffers: shared" in line)
    hits = int(re.search(r"hit=(\d+)", buffers).group(1))  # type: ignore[union-attr]
    rows = int(re.search(r"rows=(\d+) loops", lines[start].split("actual")[1]).group(1))  # type: ignore[union-attr]
    return plan, hits, rows
