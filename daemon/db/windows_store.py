"""Send windows in the database (SQL in sql/queries/windows.sql): a campaign's planning columns,
and each pending contact's open interval, written per time zone (never per row in Python):
the claim reads them through its index (`claim_contacts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from daemon.core.model import Campaign
from daemon.core.windows import SendWindow, intervals_by_zone
from daemon.db.campaigns import campaign_from_record
from daemon.db.sql import query
from daemon.errors import NotFoundError

Intervals = dict[str, tuple[datetime, datetime]]
"""Zone name -> (opens, closes) of its current or next open interval."""


async def set_planning(
    conn: asyncpg.Connection,
    campaign_id: int,
    send_window: str | None,
    window_zone: str | None,
    finish_by: datetime | None,
) -> Campaign:
    """Store the campaign's window (canonical text), fallback zone and finish-by time."""
    record = await conn.fetchrow(
        query("set_campaign_planning"), campaign_id, send_window, window_zone, finish_by
    )
    if record is None:
        raise NotFoundError(f"campaign {campaign_id} does not exist")
    return campaign_from_record(record)


async def refresh_windows(
    conn: asyncpg.Connection,
    campaign_id: int,
    window: SendWindow,
    fallback: str,
    now: datetime,
    *,
    everything: bool = False,
) -> Intervals:
    """Write the open interval at `now` of the campaign's pending contacts whose window closed
    or was never computed (`everything`: of all of them); the intervals of the zones written."""
    async with conn.transaction():
        zones = [
            r["zone"]
            for r in await conn.fetch(
                query("window_zones_to_refresh"), campaign_id, fallback, now, everything
            )
        ]
        intervals = intervals_by_zone(window, zones, fallback, now)
        if intervals:
            names = list(intervals)
            await conn.execute(
                query("window_refresh"),
                campaign_id,
                fallback,
                now,
                everything,
                names,
                [intervals[n][0] for n in names],
                [intervals[n][1] for n in names],
            )
    return intervals


async def clear_windows(conn: asyncpg.Connection, campaign_id: int) -> None:
    """The campaign has no window any more: its pending contacts may go at any time."""
    await conn.execute(query("window_clear"), campaign_id)


@dataclass(frozen=True)
class Waiting:
    """Pending contacts outside their send window, and when the next window opens."""

    contacts: int
    next_open: datetime | None


async def window_waiting(conn: asyncpg.Connection, campaign_id: int, now: datetime) -> Waiting:
    """How many pending contacts of the campaign wait for their window at `now`."""
    row = await conn.fetchrow(query("window_waiting"), campaign_id, now)
    return Waiting(int(row["waiting"]), row["next_open"])
