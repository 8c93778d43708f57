"""The capped claim's statements use their indexes: the history read probes
contacts_phone_claimed by phone (not one probe per campaign, not a scan of every contact),
the candidates walk contacts_claimable_window like the plain claim."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from daemon.db.sender_store import NO_WINDOW
from daemon.db.sql import query


async def _plan(conn: asyncpg.Connection, name: str, *args: object) -> list[dict[str, Any]]:
    """Every node of the statement's plan."""
    plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + query(name), *args)
    root = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    nodes, todo = [], [root]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def _scans(nodes: list[dict[str, Any]], relation: str) -> list[tuple[str, str | None]]:
    return [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Relation Name") == relation or relation in str(n.get("Index Name"))
    ]


async def test_the_history_read_and_the_candidates_use_their_indexes(
    conn: asyncpg.Connection,
) -> None:
    # 200 campaigns of 1,000 contacts over 50,000 phones, sent over the last week, and one
    # to claim: what a year of capped campaigns looks like to the planner.
    await conn.execute(
        "INSERT INTO campaigns (name, template_name, template_language, template_params,"
        " phone_number_id) SELECT 'c' || g, 't', 'en', '{}', '1' FROM generate_series(1, 201) g"
    )
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone, state, attempts, claimed_at)"
        " SELECT k, (447700000000 + (p * 37 + k * 1013) % 50000)::text,"
        "   CASE WHEN k <= 200 THEN 'sent'::contact_state ELSE 'initial' END,"
        "   CASE WHEN k <= 200 THEN 1 ELSE 0 END,"
        "   CASE WHEN k <= 200 THEN now() - make_interval(mins => k * 50) END"
        " FROM generate_series(1, 201) k, generate_series(1, 1000) p"
    )
    await conn.execute("ANALYZE contacts")
    await conn.execute("ANALYZE campaigns")
    phones = [str(447700000000 + p) for p in range(1000, 1500)]
    since = datetime.now(UTC) - timedelta(days=7)
    history = await _plan(conn, "caps_history", phones, 201, since, ["MARKETING"])
    scans = _scans(history, "contacts")
    assert ("Bitmap Index Scan", "contacts_phone_claimed") in scans or (
        "Index Scan",
        "contacts_phone_claimed",
    ) in scans, scans
    assert all(
        kind != "Seq Scan" and index != "contacts_campaign_phone_live" for kind, index in scans
    )
    candidates = await _plan(conn, "caps_candidates", 201, 500, 0, datetime.now(UTC), NO_WINDOW)
    scans = _scans(candidates, "contacts")
    assert any(index == "contacts_claimable_window" for _, index in scans), scans
    assert all(kind != "Seq Scan" for kind, _ in scans), scans
