"""The sender's reads and writes as named operations (SQL in sql/queries/sender.sql)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson

from daemon.core.decide import Decision
from daemon.core.model import Campaign, CampaignId, ContactId
from daemon.core.recordable import recordable_error
from daemon.core.states import ContactState
from daemon.db.campaigns import add_suppressions, campaign_from_record
from daemon.db.sql import query


# ClaimedContact and SendResult are made once per send: not frozen, since a frozen dataclass
# sets every field through object.__setattr__ (several times slower). Treat them as immutable.
@dataclass(slots=True)
class ClaimedContact:
    """A contact claimed for one send attempt."""

    id: ContactId
    campaign_id: CampaignId
    phone: str
    params: dict[str, str]
    # The attempt's number among all the contact's attempts: callback data, record_results.
    attempt: int
    # Its number within sender.max_attempts: attempts whose outcome stayed unknown (expired
    # lease, dead daemon, shutdown cut-off) are not counted there (`decide` gets this one).
    counted_attempt: int
    # When its send window opened (NO_WINDOW without one): the claim cursor's first half.
    not_before: datetime


NO_WINDOW = datetime.min
"""A contact's not_before without a send window: asyncpg's -infinity (a naive datetime.min)."""
ClaimCursor = tuple[datetime, int]
"""Where a campaign's claims go on from: the (not_before, id) of its last contact claimed."""
CURSOR_START: ClaimCursor = (NO_WINDOW, 0)


def cursor_after(claimed: Sequence[ClaimedContact]) -> ClaimCursor:
    """The cursor past every contact of a claim (not empty)."""
    last = max(claimed, key=_cursor_key)
    return last.not_before, last.id


def _cursor_key(c: ClaimedContact) -> tuple[float, int]:
    nb = c.not_before
    return (nb.timestamp() if nb.tzinfo is not None else float("-inf"), c.id)


@dataclass(slots=True)
class SendResult:
    """One attempt's result, for `record_results`."""

    contact_id: ContactId
    attempt: int
    phone: str
    decision: Decision
    at: datetime
    wamid: str | None = None
    wa_id: str | None = None
    message_status: str | None = None


async def running_campaigns(conn: asyncpg.Connection) -> tuple[list[Campaign], int | None]:
    """The running campaigns (held ones too), by id, and the highest stop number as of the
    same snapshot (None when no campaign runs)."""
    rows = await conn.fetch(query("running_campaigns"))
    return [campaign_from_record(r) for r in rows], (rows[0]["stop_seq_now"] if rows else None)


async def claim_contacts(
    conn: asyncpg.Connection,
    campaign_id: int,
    daemon_id: str,
    lease_s: float,
    limit: int,
    after: ClaimCursor = CURSOR_START,
    now: datetime | None = None,
) -> list[ClaimedContact]:
    """Claim up to `limit` due contacts of a campaign (past the cursor `after`) for `lease_s`,
    among those whose send window is open at `now` (default: the clock)."""
    rows = await conn.fetch(
        query("claim_contacts"),
        campaign_id,
        daemon_id,
        lease_s,
        limit,
        after[1],
        now or datetime.now(UTC),
        after[0],
    )
    # The columns come in the fields' order (RETURNING id, campaign_id, phone, params, ...).
    return [ClaimedContact(*r) for r in rows]


async def claim_within_limit(
    conn: asyncpg.Connection,
    campaign_id: int,
    daemon_id: str,
    lease_s: float,
    limit: int,
    daily_unique_recipients: int,
    after: ClaimCursor = CURSOR_START,
    now: datetime | None = None,
    *,
    backfill: bool = False,
    claim: Callable[[asyncpg.Connection, int], Awaitable[list[ClaimedContact]]] | None = None,
) -> tuple[list[ClaimedContact], int, datetime | None]:
    """Claim under the portfolio messaging limit: (claimed, quota left, oldest slot's time).

    Serialised across daemons by an advisory lock; the recipients claimed take their slot in
    the rolling window in the same transaction, so the limit cannot be overshot. `backfill`:
    first add every recipient of the last 24 h from the contacts' history (those sent before
    the limit was configured). `claim(conn, n)`: how to claim (the capped claim), else
    `claim_contacts`.
    """
    async with conn.transaction():
        await conn.execute(query("limit_lock"))
        if backfill:
            await conn.execute(query("limit_window_backfill"))
        window = await conn.fetchrow(query("limit_window_used"))
        quota = daily_unique_recipients - window["used"]
        if quota <= 0:
            return [], 0, window["oldest"]
        if claim is not None:
            claimed = await claim(conn, min(limit, quota))
        else:
            claimed = await claim_contacts(
                conn, campaign_id, daemon_id, lease_s, min(limit, quota), after, now
            )
        await conn.execute(query("limit_window_add"), [c.phone for c in claimed])
    return claimed, quota - len(claimed), window["oldest"]


async def next_window_open(
    conn: asyncpg.Connection, campaign_ids: Sequence[int], now: datetime
) -> datetime | None:
    """When the send window of a waiting contact of these campaigns next opens (None: none
    waits)."""
    opens: datetime | None = await conn.fetchval(query("next_window_open"), list(campaign_ids), now)
    return opens


async def record_results(
    conn: asyncpg.Connection, results: Sequence[SendResult], *, timeout: float | None = None
) -> int:
    """One statement for the whole flush (plus the suppressions it implies, same transaction);
    `timeout`: seconds each statement may take (a lock held longer cancels it)."""
    suppressed = [r.phone for r in results if r.decision.suppress]
    if suppressed:  # a transaction only when there is a second statement
        async with conn.transaction():
            count = await _record(conn, results, timeout)
            await add_suppressions(conn, suppressed, "opted out of marketing messages (131050)")
        return count
    return await _record(conn, results, timeout)


_SENT = ContactState.SENT  # reading a member from its class is a Python-level lookup on 3.11


async def _record(
    conn: asyncpg.Connection, results: Sequence[SendResult], timeout: float | None = None
) -> int:
    # One JSON text parameter: asyncpg's encoding of ten typed arrays cost 3.7 us of the
    # daemon's CPU per result, orjson 1.5 us, for the same work on the server.
    items = []
    for r in results:
        decision = r.decision
        item = {
            "id": r.contact_id,
            "attempt": r.attempt,
            "state": decision.state,  # orjson writes an enum as its value
            "wamid": r.wamid,
            "wa_id": r.wa_id,
            "message_status": r.message_status,
            "at": r.at,
        }
        if decision.state is not _SENT:  # a missing key reads as NULL
            code, title = recordable_error(decision.error_code, decision.error_title)
            item["error_code"] = code
            item["error_title"] = title
            item["next_attempt_at"] = decision.next_attempt_at
            if decision.unknown:
                item["unknown"] = True
        items.append(item)
    status: str = await conn.execute(
        query("record_results"), orjson.dumps(items).decode(), timeout=timeout
    )
    return int(status.rpartition(" ")[2])  # "INSERT 0 n": no row comes back to decode


async def release_contacts(conn: asyncpg.Connection, ids: Sequence[int], daemon_id: str) -> str:
    """Give back contacts claimed and never sent: back to where they were, the attempt undone."""
    result: str = await conn.execute(query("release_contacts"), list(ids), daemon_id)
    return result


async def expire_own_contacts(
    conn: asyncpg.Connection,
    ids: Sequence[int],
    policy: str,
    grace_s: float,
    max_attempts: int,
    daemon_id: str,
    max_unknown_outcomes: int,
) -> str:
    """At shutdown: this daemon's cut-off sends get an unknown outcome (see expire_leases)."""
    result: str = await conn.execute(
        query("expire_own_contacts"),
        list(ids),
        policy,
        grace_s,
        max_attempts,
        daemon_id,
        max_unknown_outcomes,
    )
    return result


async def expire_leases(
    conn: asyncpg.Connection,
    policy: str,
    grace_s: float,
    max_attempts: int,
    dead_after_s: float,
    daemon_id: str,
    max_unknown_outcomes: int,
    batch: int = 1000,
) -> list[asyncpg.Record]:
    """Recover claims whose outcome became unknown: (id, new state) rows.

    The expired attempt does not count against `max_attempts` (kept for what the API answers);
    the contact becomes `error` under the error policy, when its counted attempts are already
    used up, or at its `max_unknown_outcomes`-th unknown outcome.
    """
    return list(
        await conn.fetch(
            query("expire_leases"),
            policy,
            grace_s,
            max_attempts,
            dead_after_s,
            batch,
            daemon_id,
            max_unknown_outcomes,
        )
    )


async def renew_claims(
    conn: asyncpg.Connection, ids: Sequence[int], daemon_id: str, lease_s: float
) -> set[int]:
    """Extend this daemon's claims by `lease_s`; the ids still held."""
    rows = await conn.fetch(query("renew_claims"), list(ids), daemon_id, lease_s)
    return {r["id"] for r in rows}


async def finish_campaign_if_done(conn: asyncpg.Connection, campaign_id: int) -> bool:
    """Finish the campaign if no contact is pending; whether it was."""
    return await conn.fetchval(query("finish_campaign_if_done"), campaign_id) is not None


async def next_retry_due(conn: asyncpg.Connection) -> datetime | None:
    """When the next scheduled retry falls due (None if there is none)."""
    due: datetime | None = await conn.fetchval(query("next_retry_due"))
    return due


async def pause_campaign_fatal(
    conn: asyncpg.Connection, campaign_id: int, reason: str, by: str = "daemon"
) -> bool:
    """Pause a running campaign for a campaign-fatal error (a stop, like an operator's: the
    other daemons are told by NOTIFY); whether it was running. `by` 'meta' when Meta's
    template status is why (undone when Meta approves the template again)."""
    async with conn.transaction():
        paused = await conn.fetchval(query("pause_campaign_fatal"), campaign_id, reason, by)
        if paused is not None:
            await conn.execute(query("notify_campaigns_changed"), f"{campaign_id}:pause")
    return paused is not None


async def set_campaign_hold(
    conn: asyncpg.Connection, campaign_ids: Sequence[int], reason: str, until: datetime | None
) -> None:
    """Hold campaigns until `until` (None: until cleared), with the reason shown."""
    await conn.execute(query("set_campaign_hold"), list(campaign_ids), reason, until)


async def clear_campaign_hold(conn: asyncpg.Connection, campaign_id: int) -> None:
    """End a campaign's hold."""
    await conn.execute(query("clear_campaign_hold"), campaign_id)


@dataclass(frozen=True)
class Beat:
    """What a heartbeat tells the others: the stops confirmed, the numbers with their rates
    ({number: {"rate": r, "effective": e}}), the messages accepted, the send bound."""

    acked_stop_seq: int
    numbers: dict[str, dict[str, float]]
    sent: int
    send_bound_s: float


async def heartbeat(
    conn: asyncpg.Connection, daemon_id: str, hostname: str, pid: int, beat: Beat
) -> None:
    """This daemon is alive (its row in daemons, made again if it was removed)."""
    await conn.execute(
        query("heartbeat"),
        daemon_id,
        hostname,
        pid,
        beat.acked_stop_seq,
        beat.numbers,
        beat.sent,
        beat.send_bound_s,
    )


async def live_daemon_count(conn: asyncpg.Connection, dead_after_s: float) -> int:
    """Daemons that heartbeated within `dead_after_s`."""
    count: int = await conn.fetchval(query("live_daemon_count"), dead_after_s)
    return count


async def forget_daemon(conn: asyncpg.Connection, daemon_id: str) -> None:
    """Remove this daemon's row (on a clean stop)."""
    await conn.execute(query("forget_daemon"), daemon_id)
