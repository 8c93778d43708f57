"""What /metrics reads from the shared database (SQL in sql/queries/observe.sql)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from daemon.db.sql import query


@dataclass(frozen=True)
class DatabaseSample:
    """One sample of the database's state, for the gauges of engine.metrics."""

    receipts_lag_s: float  # the most overdue receipt's wait since it became due
    receipts_pending: int
    receipts_orphaned: int
    unknown_outcomes: int  # retry scheduled with an unknown outcome: awaiting a receipt
    limit_used: int  # unique recipients in the rolling 24 h window (the messaging limit)
    daemons_live: int


async def sample(conn: asyncpg.Connection, live_within_s: float) -> DatabaseSample:
    """One round trip: receipts lag and counts, unknown outcomes, limit use, live daemons."""
    r = await conn.fetchrow(query("metrics_sample"), live_within_s)
    return DatabaseSample(
        receipts_lag_s=max(0.0, float(r["receipts_lag_s"])),
        receipts_pending=r["receipts_pending"],
        receipts_orphaned=r["receipts_orphaned"],
        unknown_outcomes=r["unknown_outcomes"],
        limit_used=r["limit_used"],
        daemons_live=r["daemons_live"],
    )
