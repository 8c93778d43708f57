"""Campaign lifecycle commands as operators run them: pause and cancel are immediate stops.

`stop_campaign` flips the campaign's state first, in its own short transaction (the daemons
stop claiming from it at once, and are woken by NOTIFY to drop what they hold of it), then
waits until no message of the campaign can leave any daemon, and only then returns; a cancel
then moves the contacts not sent yet to Canceled by admin in batches, so that every contact
ends final.

"No message can leave any daemon" is decided from the daemons table: every daemon confirms a
stop number once it holds nothing of the stopped campaigns (engine.stops). A daemon that has
not confirmed is waited for while it may still send: while its last heartbeat is younger than
its send bound (its fence, after which it starts no send, plus its request timeout). A daemon
that is alive but cut off from the database stops sending by its fence and is waited for up
to that bound; one that keeps heartbeating without confirming (stuck) fails the command after
the bound and a margin, naming it, with the campaign already stopped in the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import asyncpg

from daemon.core.model import Campaign, CampaignId
from daemon.core.states import CampaignCommand, CampaignState
from daemon.db import campaigns as store
from daemon.db import daemons
from daemon.errors import TransitionError, WaSenderError

CANCEL_BATCH: Final = 100_000
"""Contacts moved to Canceled by admin per transaction."""
POLL_S: Final = 0.25
"""Confirmations wake the wait by NOTIFY; this poll notices daemons passing their bound."""
STUCK_MARGIN_S: Final = 5.0
"""A daemon that heartbeats but has not confirmed after its send bound and this: an error."""
LIVE_WITHIN_S: Final = 10.0
"""A daemon that heartbeated within this many seconds counts as running (warnings)."""


@dataclass(frozen=True)
class LifecycleResult:
    """What a lifecycle command did."""

    campaign: Campaign
    changed: bool = True  # False: resume of a running campaign, nothing to do
    confirmed_by: int = 0  # daemons that confirmed the stop
    silent: list[daemons.Unconfirmed] = field(default_factory=list)  # gone quiet instead
    canceled: int = 0  # contacts moved to Canceled by admin
    unknown_outcome: int = 0  # of those: in progress with a daemon that went silent
    seconds: float = 0.0


class StopNotConfirmed(WaSenderError):
    """A daemon still heartbeats but did not confirm the stop in time."""


async def change_state(
    conn: asyncpg.Connection,
    campaign_id: int,
    command: CampaignCommand,
    *,
    clock: Callable[[], float] = time.monotonic,
    start_at: datetime | None = None,
) -> LifecycleResult:
    """Apply `command`: start, schedule (at `start_at`) and resume flip the state; pause and
    cancel stop the campaign (`stop_campaign`). Resuming a running campaign changes nothing
    (`changed` False)."""
    if command in (CampaignCommand.PAUSE, CampaignCommand.CANCEL):
        return await stop_campaign(conn, campaign_id, command, clock=clock)
    try:
        campaign = await store.change_campaign_state(conn, campaign_id, command, start_at=start_at)
    except TransitionError:
        current = await store.get_campaign(conn, campaign_id)
        if command is CampaignCommand.RESUME and current.state is CampaignState.RUNNING:
            return LifecycleResult(current, changed=False)
        raise
    return LifecycleResult(campaign)


async def stop_campaign(
    conn: asyncpg.Connection,
    campaign_id: int,
    command: CampaignCommand,
    *,
    batch: int = CANCEL_BATCH,
    stuck_margin_s: float = STUCK_MARGIN_S,
    clock: Callable[[], float] = time.monotonic,
) -> LifecycleResult:
    """Pause or cancel, returning once no message of the campaign can leave any daemon (and,
    for a cancel, every contact is final). StopNotConfirmed if a daemon that still heartbeats
    did not confirm in time.

    A cancel moves the contacts once the daemons have confirmed: moving them meanwhile would
    compete with the daemons' last sends for the database (measured: slower overall), and
    afterwards one pass also finds what those sends left (a transient failure: Retry
    scheduled)."""
    if command not in (CampaignCommand.PAUSE, CampaignCommand.CANCEL):
        raise ValueError(f"{command.value} is not a stop")
    started = clock()
    confirmed = asyncio.Event()
    listener: Callable[..., None] = lambda *_: confirmed.set()  # noqa: E731
    await conn.add_listener(daemons.STOP_ACKS_CHANNEL, listener)
    try:
        campaign = await store.change_campaign_state(conn, campaign_id, command)
        acked, silent = await _wait_for_confirmations(
            conn, campaign.stop_seq, confirmed, clock, stuck_margin_s
        )
    finally:
        await conn.remove_listener(daemons.STOP_ACKS_CHANNEL, listener)
    canceled = unknown = 0
    if command is CampaignCommand.CANCEL:
        canceled, unknown = await cancel_pending(conn, campaign.id, batch)
    return LifecycleResult(
        campaign,
        confirmed_by=acked,
        silent=silent,
        canceled=canceled,
        unknown_outcome=unknown,
        seconds=clock() - started,
    )


async def _wait_for_confirmations(
    conn: asyncpg.Connection,
    seq: int,
    confirmed: asyncio.Event,
    clock: Callable[[], float],
    stuck_margin_s: float,
) -> tuple[int, list[daemons.Unconfirmed]]:
    """Until no daemon may still send: (daemons that confirmed, those that went silent)."""
    waited: dict[str, daemons.Unconfirmed] = {}
    first_seen: dict[str, float] = {}
    while True:
        confirmed.clear()
        pending = await daemons.daemons_yet_to_ack(conn, seq)
        if not pending:
            break
        now = clock()
        for d in pending:
            waited[d.id] = d
            first_seen.setdefault(d.id, now)
        # A daemon cut off from the database drops out of `pending` within its send bound;
        # one still there after it (and a margin) heartbeats without confirming: stuck.
        stuck = [d for d in pending if now > first_seen[d.id] + d.send_bound_s + stuck_margin_s]
        if stuck:
            names = ", ".join(f"{d.id} (pid {d.pid} on {d.hostname})" for d in stuck)
            raise StopNotConfirmed(
                f"the campaign is stopped in the database, but daemon {names} still heartbeats "
                "and has not confirmed that it holds none of its contacts: check its log"
            )
        try:
            await asyncio.wait_for(confirmed.wait(), POLL_S)
        except TimeoutError:
            pass
    still = {d.id for d in await daemons.daemons_yet_to_ack(conn, seq, may_send=False)}
    silent = [d for d in waited.values() if d.id in still]
    return len(waited) - len(silent), silent


async def cancel_pending(
    conn: asyncpg.Connection, campaign_id: CampaignId, batch: int = CANCEL_BATCH
) -> tuple[int, int]:
    """Every contact of a canceled campaign not sent yet becomes Canceled by admin, in
    transactions of `batch`; then those in progress with a daemon that can no longer send
    (outcome unknown). (canceled, of which outcome unknown)."""
    total = await _cancel_batches(conn, campaign_id, batch)
    unknown = await store.cancel_unheld_in_progress(conn, campaign_id)
    return total + unknown, unknown


async def _cancel_batches(conn: asyncpg.Connection, campaign_id: int, batch: int) -> int:
    total, after = 0, 0
    while True:
        n, last = await store.cancel_pending_batch(conn, campaign_id, after, batch)
        total += n
        if n < batch or last is None:
            return total
        after = last


async def live_daemon_count(conn: asyncpg.Connection, within_s: float = LIVE_WITHIN_S) -> int:
    """Daemons that heartbeated within `within_s` seconds."""
    return len(await daemons.live_daemons(conn, within_s))
