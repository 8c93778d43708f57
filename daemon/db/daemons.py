"""The daemons table as named operations: registration, liveness, and the confirmations of
campaign stops (SQL in sql/queries/daemons.sql and sender.sql).

A pause or cancel takes the next stop number. Each daemon confirms (acks) a number once it
holds nothing of any campaign stopped up to it; the stopping command waits for the daemons
that could still send (`daemons_yet_to_ack`): those not confirmed and heard from within their
send bound (after which a daemon that lost the database cannot have a message leave).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

from daemon.core.model import CampaignId
from daemon.db.sql import query

STOP_ACKS_CHANNEL: Final = "wa_sender_stop_acks"
"""NOTIFY channel: a daemon confirmed stops (payload: the stop number); see sql ack_stops."""


@dataclass(frozen=True)
class Stops:
    """Campaigns stopped after some stop number, and the highest number now."""

    stopped: dict[CampaignId, int]  # campaign -> its stop number, those not running again
    seq: int


@dataclass(frozen=True)
class DaemonRow:
    """A daemon as its last heartbeat left it."""

    id: str
    hostname: str
    pid: int
    version: str | None
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    numbers: dict[str, dict[str, float]]
    sent: int
    acked_stop_seq: int


@dataclass(frozen=True)
class Unconfirmed:
    """A daemon that may still send a stopped campaign: it has not confirmed the stop."""

    id: str
    hostname: str
    pid: int
    silent_s: float
    send_bound_s: float


async def register_daemon(
    conn: asyncpg.Connection,
    daemon_id: str,
    hostname: str,
    pid: int,
    send_bound_s: float,
    version: str,
) -> int:
    """This daemon's row (it holds nothing yet: every stop so far confirmed); the stop number
    it starts from."""
    seq: int = await conn.fetchval(
        query("register_daemon"), daemon_id, hostname, pid, send_bound_s, version
    )
    return seq


async def campaign_stops_since(conn: asyncpg.Connection, after_seq: int) -> Stops:
    """The campaigns stopped after `after_seq` that are still not running, and the highest
    stop number, from one snapshot."""
    rows = await conn.fetch(query("campaign_stops_since"), after_seq)
    stopped = {
        CampaignId(r["id"]): int(r["stop_seq"])
        for r in rows
        if r["id"] is not None and r["state"] != "running"
    }
    return Stops(stopped, int(rows[0]["stop_seq_now"]))


async def ack_stops(conn: asyncpg.Connection, daemon_id: str, seq: int) -> None:
    """Confirm every stop up to `seq` (and NOTIFY `STOP_ACKS_CHANNEL`)."""
    await conn.execute(query("ack_stops"), daemon_id, seq)


async def daemons_yet_to_ack(
    conn: asyncpg.Connection, seq: int, *, may_send: bool = True
) -> list[Unconfirmed]:
    """Daemons that have not confirmed stop `seq` and (`may_send`) may still send a campaign
    stopped then."""
    return [
        Unconfirmed(r["id"], r["hostname"], r["pid"], r["silent_s"], r["send_bound_s"])
        for r in await conn.fetch(query("daemons_yet_to_ack"), seq, may_send)
    ]


async def live_daemons(conn: asyncpg.Connection, within_s: float) -> list[DaemonRow]:
    """Daemons that heartbeated within `within_s` seconds, oldest first."""
    return [_row(r) for r in await conn.fetch(query("live_daemons"), within_s)]


def _row(r: asyncpg.Record) -> DaemonRow:
    numbers: Any = r["numbers"]
    if isinstance(numbers, str | bytes):
        numbers = orjson.loads(numbers)
    return DaemonRow(
        id=r["id"],
        hostname=r["hostname"],
        pid=r["pid"],
        version=r["version"],
        started_at=r["started_at"],
        heartbeat_at=r["heartbeat_at"],
        heartbeat_age_s=r["heartbeat_age_s"],
        numbers=dict(numbers or {}),
        sent=r["sent"],
        acked_stop_seq=r["acked_stop_seq"],
    )
