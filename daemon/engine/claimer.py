"""The claim side of the sender: which contacts this daemon holds, and whether it still may
send them.

One claim loop fills a queue per sending phone number, never more than can be sent within a
lease, walking each running campaign forward and finishing those with nothing left. Fencing
keeps the claims honest: a contact is sent only while this daemon's heartbeat is fresh and
its claim well inside the lease; otherwise the queued claims are renewed first, and those
another daemon recovered meanwhile are never sent (`lost`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg

from daemon.config import Config
from daemon.core.caps import parse_categories, parse_rules
from daemon.core.model import Campaign, CampaignId
from daemon.core.pacing import ClaimAllowance, paced_rate
from daemon.core.ratelimit import RateLimiters
from daemon.core.retry import database_retrying
from daemon.core.template_build import BodyBuilder
from daemon.db import campaigns as campaign_store
from daemon.db import caps_store
from daemon.db import sender_store as store
from daemon.db.pool import RETRYABLE_ERRORS, is_blocked_write
from daemon.engine.budget import claim_within_budget
from daemon.engine.preparer import CampaignPreparer, Prepared
from daemon.engine.recorder import ResultRecorder
from daemon.engine.upkeep import FENCE_AFTER_S
from daemon.engine.workqueue import WorkQueue
from daemon.logs import get_logger

log = get_logger(__name__)

CappedClaim = Callable[[asyncpg.Connection, int], Awaitable[list[store.ClaimedContact]]]
"""A claim through the frequency caps (db.caps_store): connection, how many."""

FINISH_CHECK_EVERY_S = 1.0
QUEUE_S = 0.5
PACE_EVERY_S = 2.0  # a finish-by campaign's rate is recomputed from its remaining contacts
# The messaging limit's window takes the recipients of the last 24 h from the contacts'
# history at the first limited claim, then this often (sent by daemons without the limit).
LIMIT_BACKFILL_EVERY_S = 300.0


def utc_now() -> datetime:
    """The wall clock the daemon plans by (send windows, finish-by, scheduled starts)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Work:
    """One claimed contact on its way to the Cloud API."""

    contact: store.ClaimedContact
    campaign: Campaign
    claimed_at: float  # monotonic
    build: BodyBuilder  # the campaign's body builder (`engine.preparer`)
    endpoint: str  # messages | marketing_messages


class ClaimHolder(Protocol):
    """The sender, as the claimer sees it: where claimed contacts go, and what it holds."""

    def queue_for(self, phone_number_id: str) -> WorkQueue[Work]:
        """The queue of a sending number (made, with its workers, on first use)."""
        ...

    def held(self) -> list[Work]:
        """Every contact taken or queued, not yet sending."""
        ...

    def sending(self, campaign_id: CampaignId) -> bool:
        """Whether a send of this campaign is in flight."""
        ...

    async def release(self, ids: list[int]) -> None:
        """Give back contacts claimed and never sent."""
        ...


class Claimer:
    """Claims contacts into the holder's queues (`run`) and fences them (`fence_clear`,
    `fence`). `sendable` and `lost` are read on every send: the campaigns whose contacts
    may go, and the claims another daemon recovered."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Config,
        daemon_id: str,
        limiters: RateLimiters,
        holder: ClaimHolder,
        preparer: CampaignPreparer | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._pool = pool
        self._wall_clock = wall_clock
        self.preparer = preparer or CampaignPreparer(config)
        self._config = config
        self._daemon_id = daemon_id
        self._limiters = limiters
        self._holder = holder
        self._wake = asyncio.Event()
        self.room = asyncio.Event()  # set by the send workers when a queue runs low
        self._halted: set[CampaignId] = set()
        self.sendable: set[CampaignId] = set()
        # Campaigns paused or canceled, with their stop numbers: a read of the running
        # campaigns older than a campaign's stop does not make it sendable again.
        self._stopped_at: dict[CampaignId, int] = {}
        self.claiming: CampaignId | None = None  # the campaign a claim statement is out for
        self._claim_cursor: dict[CampaignId, store.ClaimCursor] = {}
        # Finish-by campaigns: how many contacts each may claim now, and when its rate was
        # last recomputed (monotonic).
        self._paced: dict[CampaignId, tuple[ClaimAllowance, float]] = {}
        self._finish_checked: dict[CampaignId, float] = {}
        self._last_heartbeat = time.monotonic()
        self._claims_in_doubt = False
        self._fence_lock = asyncio.Lock()
        self._lease_margin = config.recovery.lease_s * 0.8
        self.lost: set[int] = set()
        self.claimed = 0
        # The recorder, told when the database blocks or takes the claims' writes.
        self.writes: ResultRecorder | None = None
        self._prepared_ids: set[CampaignId] = set()
        limits = config.limits
        self._caps = caps_store.CapPolicy(
            parse_rules(limits.per_contact), parse_categories(limits.per_contact_categories)
        )
        self._backfilled_at: float | None = None  # monotonic

    def wake(self) -> None:
        """A campaign started or resumed (NOTIFY), or a retry fell due."""
        self._wake.set()

    def note_heartbeat(self, started: float) -> None:
        """A heartbeat that was sent at `started` (monotonic) was written: this daemon is alive
        in the database's eyes since then (the database wrote it later, so `heartbeat_at` +
        the fence bounds every send; see `send_bound_s`). After a long silence its queued
        claims are in doubt until renewed."""
        if started - self._last_heartbeat > FENCE_AFTER_S:
            self._claims_in_doubt = True
        self._last_heartbeat = max(self._last_heartbeat, started)

    def heartbeat_age_s(self) -> float:
        """Seconds since the last heartbeat that reached the database was sent."""
        return time.monotonic() - self._last_heartbeat

    def stop_campaigns(self, stopped: Mapping[CampaignId, int]) -> None:
        """Campaigns paused or canceled (with their stop numbers): no longer sendable, and not
        made sendable again by a read of the running campaigns made before their stop."""
        for campaign_id, seq in stopped.items():
            self._stopped_at[campaign_id] = max(seq, self._stopped_at.get(campaign_id, 0))
            self.sendable.discard(campaign_id)
            self._claim_cursor.pop(campaign_id, None)  # released contacts lie behind it

    def halt(self, campaign_id: CampaignId) -> bool:
        """Stop sending a campaign (a campaign-fatal error); False if it was halted already."""
        if campaign_id in self._halted:
            return False
        self._halted.add(campaign_id)
        self.sendable.discard(campaign_id)
        return True

    def unhalt(self, campaign_id: CampaignId) -> None:
        """The hold is over: the claim loop makes it sendable again if it is still running."""
        self._halted.discard(campaign_id)
        self.wake()

    def capacity(self, phone_number_id: str) -> int:
        """Most contacts to hold queued for a number: about QUEUE_S seconds of sending (what a
        crash strands, and how long a claimed contact waits), never more than half a lease."""
        rate = self._limiters.bucket(phone_number_id).configured_rate
        by_time = int(rate * QUEUE_S)
        by_lease = int(rate * self._config.recovery.lease_s * 0.5)
        return max(1, min(2 * self._config.sender.batch_size, by_time, by_lease))

    # -- claim --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim until `stop` is set, through database outages."""
        async for attempt in database_retrying(
            RETRYABLE_ERRORS, log, operation="claim_loop", max_s=5.0
        ):
            with attempt:
                try:
                    await self._claim_loop(stop)
                except RETRYABLE_ERRORS as exc:
                    if is_blocked_write(exc) and self.writes is not None:
                        self.writes.note_blocked(exc)
                    raise

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        batch = self._config.sender.batch_size
        while not stop.is_set():
            self._wake.clear()
            self.room.clear()
            async with self._pool.acquire() as conn:
                campaigns, read_seq = await store.running_campaigns(conn)
                now = self._wall_clock()
                running = {c.id for c in campaigns}
                self._halted &= running
                for gone in [c for c in self._prepared_ids if c not in running]:
                    self.preparer.forget(gone)
                    self._prepared_ids.discard(gone)
                stopped_at = self._stopped_at
                # Queued contacts of a campaign paused or canceled meanwhile are released.
                self.sendable = {
                    c.id
                    for c in campaigns
                    if c.id not in self._halted
                    and not _held(c, now)
                    and stopped_at.get(c.id, 0) <= (read_seq or 0)
                }
                claimed, full, paced_wait = 0, False, float("inf")
                held_back = 0  # capped contacts made to wait or failed: more may be due now
                for gone in [c for c in self._paced if c not in running]:
                    del self._paced[gone]
                for campaign in campaigns:
                    if campaign.id not in self.sendable:
                        continue
                    prepared = await self.preparer.prepare(conn, campaign)
                    if prepared is None:  # paused or held by the preparer, reason recorded
                        self.sendable.discard(campaign.id)
                        continue
                    self._prepared_ids.add(campaign.id)
                    capacity = self.capacity(campaign.phone_number_id)
                    queued = len(self._holder.queue_for(campaign.phone_number_id))
                    want = min(capacity - queued, batch)
                    if want < min(batch, capacity) // 2:  # refill by at least half a batch
                        full = True
                        continue
                    allowance = await self._allowance(conn, campaign, now)
                    if allowance is not None:  # finish-by: no more than its paced share
                        at = time.monotonic()
                        # A fifth of a second's worth at a time, not a statement per contact.
                        step = allowance.step
                        if allowance.available(at) < step:
                            paced_wait = min(paced_wait, allowance.wait_s(at, step))
                            continue
                        want = min(want, allowance.available(at))
                    got, held = await self._claim(conn, campaign, want, prepared)
                    claimed += got
                    held_back += held
                    if allowance is not None:
                        allowance.take(got, time.monotonic())
                        at = time.monotonic()
                        paced_wait = min(paced_wait, allowance.wait_s(at, allowance.step))
                    if got == 0 and held == 0:
                        await self._maybe_finish(conn, campaign)
                    elif got == want and allowance is None:
                        full = True
                busy = claimed or held_back or full
                idle_s = 0.0 if busy else await self._idle_wait(conn, campaigns)
            if claimed and self.writes is not None:  # a claim is a write: the database takes them
                self.writes.note_written()
            if stop.is_set():
                return
            if (claimed or held_back) and not full and paced_wait == float("inf"):
                continue  # more may be due right away
            events = [self._wake, stop, *([self.room] if full else [])]
            timeout = (0.2 if claimed else 1.0) if full else idle_s
            await _first_of(events, min(timeout, max(0.01, paced_wait)))

    async def _claim(
        self, conn: asyncpg.Connection, campaign: Campaign, limit: int, prepared: Prepared
    ) -> tuple[int, int]:
        """(contacts claimed, contacts the frequency caps held back)."""
        # While set, a stop of this campaign waits: the claim may yet come back with contacts.
        self.claiming = campaign.id
        try:
            return await self._claim_into_queue(conn, campaign, limit, prepared)
        finally:
            self.claiming = None

    async def _claim_into_queue(
        self, conn: asyncpg.Connection, campaign: Campaign, limit: int, prepared: Prepared
    ) -> tuple[int, int]:
        lease_s = self._config.recovery.lease_s
        after = self._claim_cursor.get(campaign.id, store.CURSOR_START)
        now = self._wall_clock()
        held = 0
        capped = self._caps.applies_to(campaign.template_category)

        async def claim_capped(c: asyncpg.Connection, n: int) -> list[store.ClaimedContact]:
            nonlocal held
            result = await caps_store.claim_capped(
                c,
                campaign.id,
                self._daemon_id,
                lease_s,
                n,
                self._caps,
                now,
                after=after,
                finish_by=campaign.finish_by,
            )
            held = result.waiting + result.failed
            if held:
                log.debug(
                    "contacts_capped",
                    campaign_id=campaign.id,
                    waiting=result.waiting,
                    failed=result.failed,
                )
            return result.claimed

        async def claim(most: int | None = None) -> list[store.ClaimedContact] | None:
            count = limit if most is None else min(limit, most)
            capped_claim = claim_capped if capped else None
            return await self._claim_limited(conn, campaign, count, after, now, capped_claim)

        if campaign.budget is None:
            found = await claim()
        else:  # kept within the budget, the rest released (engine.budget)
            found = await claim_within_budget(conn, campaign, self._daemon_id, claim)
        if found is None:
            return 0, 0
        claimed = found
        # Walk the campaign forward; a short claim means the end was reached: start over, for
        # retries that fell due behind the cursor and contacts released by others.
        # Contacts held back by a cap moved forward (not_before): start over behind them.
        self._claim_cursor[campaign.id] = (
            store.cursor_after(claimed)
            if len(claimed) == limit and not held
            else store.CURSOR_START
        )
        if claimed and campaign.hold_reason:
            await store.clear_campaign_hold(conn, campaign.id)
        if claimed and campaign.id not in self.sendable:
            # Stopped while the claim ran (its statement saw the campaign running): given
            # back unsent. No await from this check to the queue.
            await self._holder.release([c.id for c in claimed])
            return 0, held
        at = time.monotonic()
        build, endpoint = prepared.build, prepared.endpoint
        self._holder.queue_for(campaign.phone_number_id).put_many(
            [Work(contact, campaign, at, build, endpoint) for contact in claimed]
        )
        if claimed:
            self.claimed += len(claimed)
            log.debug("batch_claimed", campaign_id=campaign.id, count=len(claimed))
        return len(claimed), held

    async def _claim_limited(
        self,
        conn: asyncpg.Connection,
        campaign: Campaign,
        limit: int,
        after: store.ClaimCursor,
        now: datetime,
        claim_capped: CappedClaim | None,
    ) -> list[store.ClaimedContact] | None:
        """The claim, through the frequency caps when they apply and under the messaging limit
        when one is set (None: the limit is reached and the campaign held)."""
        lease_s = self._config.recovery.lease_s
        daily_limit = self._config.limits.daily_unique_recipients
        if daily_limit > 0:
            at = time.monotonic()
            backfill = (
                self._backfilled_at is None or at - self._backfilled_at >= LIMIT_BACKFILL_EVERY_S
            )
            claimed, quota, oldest = await store.claim_within_limit(
                conn,
                campaign.id,
                self._daemon_id,
                lease_s,
                limit,
                daily_limit,
                after,
                now,
                backfill=backfill,
                claim=claim_capped,
            )
            if backfill:
                self._backfilled_at = at
            if not claimed and quota <= 0:
                frees_at = (oldest or datetime.now(UTC)) + timedelta(hours=24)
                reason = (
                    f"messaging limit reached: {daily_limit} unique recipients per rolling 24 h;"
                    f" next slot frees at {frees_at:%Y-%m-%d %H:%M:%S} UTC"
                )
                await store.set_campaign_hold(conn, [campaign.id], reason, frees_at)
                log.warning("messaging_limit_reached", campaign_id=campaign.id, limit=daily_limit)
                return None
        elif claim_capped is not None:
            claimed = await claim_capped(conn, limit)
        else:
            claimed = await store.claim_contacts(
                conn, campaign.id, self._daemon_id, lease_s, limit, after, now
            )
        return claimed

    async def _maybe_finish(self, conn: asyncpg.Connection, campaign: Campaign) -> None:
        now = time.monotonic()
        if now - self._finish_checked.get(campaign.id, 0.0) < FINISH_CHECK_EVERY_S:
            return
        self._finish_checked[campaign.id] = now
        if self._holder.sending(campaign.id):
            return
        if await store.finish_campaign_if_done(conn, campaign.id):
            log.info("campaign_finished", campaign_id=campaign.id)

    async def _allowance(
        self, conn: asyncpg.Connection, campaign: Campaign, now: datetime
    ) -> ClaimAllowance | None:
        """A finish-by campaign's claim allowance, its rate recomputed every PACE_EVERY_S from
        the contacts it has left (None: the campaign is not paced)."""
        if campaign.finish_by is None:
            self._paced.pop(campaign.id, None)
            return None
        at = time.monotonic()
        known = self._paced.get(campaign.id)
        if known is not None and at - known[1] < PACE_EVERY_S:
            return known[0]
        remaining = await campaign_store.pending_contact_count(conn, campaign.id)
        bucket = self._limiters.bucket(campaign.phone_number_id)
        # This daemon's share of the paced rate, like its share of the number's rate.
        share = self._limiters.share
        rate = paced_rate(remaining, now, campaign.finish_by, bucket.configured_rate / share)
        rate = min(bucket.configured_rate, rate * share)
        if known is None:
            allowance = ClaimAllowance(rate, at)
        else:
            allowance = known[0]
            allowance.set_rate(rate, at)
        self._paced[campaign.id] = (allowance, at)
        log.debug("campaign_paced", campaign_id=campaign.id, remaining=remaining, rate=rate)
        return allowance

    async def _idle_wait(self, conn: asyncpg.Connection, campaigns: list[Campaign]) -> float:
        """Seconds to sleep when there is nothing to claim: until the next retry falls due,
        a held campaign's hold ends, a send window opens, or the idle poll, whichever is
        first."""
        timeout = self._config.sender.idle_poll_s
        if not campaigns:
            return timeout
        now = self._wall_clock()
        due = await store.next_retry_due(conn)
        # Contacts wait for a send window or for a frequency cap (both in not_before).
        windowed = [c.id for c in campaigns if c.send_window is not None or self._caps.rules]
        opens = await store.next_window_open(conn, windowed, now) if windowed else None
        candidates = [due, opens, *(c.hold_until for c in campaigns)]
        for moment in candidates:
            if moment is not None:
                timeout = min(timeout, max(0.05, (moment - now).total_seconds()))
        if any(c.id in self._finish_checked for c in campaigns):
            timeout = min(timeout, FINISH_CHECK_EVERY_S)
        return timeout

    # -- fence --------------------------------------------------------------------------

    def fence_clear(self, work: Work) -> bool:
        """The common case, checked without a coroutine: heartbeat fresh, claim well in lease
        (not `_needs_renewal`, which is the same test, but one call and clock reading more)."""
        now = time.monotonic()
        return (
            now - self._last_heartbeat <= FENCE_AFTER_S
            and not self._claims_in_doubt
            and now - work.claimed_at <= self._lease_margin
        )

    def _needs_renewal(self, work: Work) -> bool:
        return self._claims_in_doubt or time.monotonic() - work.claimed_at > self._lease_margin

    async def fence(self, work: Work) -> None:
        """Fencing: never send a claim another daemon may have recovered. Waits while the
        database is away, then renews the queued claims; those lost end up in `lost`."""
        while time.monotonic() - self._last_heartbeat > FENCE_AFTER_S:
            await asyncio.sleep(0.1)
        if self._needs_renewal(work):
            async with self._fence_lock:
                if self._needs_renewal(work):  # another dispatcher may have renewed meanwhile
                    await self._renew_queued_claims(work)

    async def _renew_queued_claims(self, current: Work) -> None:
        queued = [current, *(w for w in self._holder.held() if w is not current)]
        ids = [w.contact.id for w in queued]
        kept: set[int] = set()
        async for attempt in database_retrying(RETRYABLE_ERRORS, log, operation="sender_write"):
            with attempt:
                async with self._pool.acquire() as conn:
                    kept = await store.renew_claims(
                        conn, ids, self._daemon_id, self._config.recovery.lease_s
                    )
        now = time.monotonic()
        for work in queued:
            work.claimed_at = now
        lost = set(ids) - kept
        self.lost |= lost
        self._claims_in_doubt = False
        if lost:
            log.warning("claims_lost", count=len(lost), kept=len(kept))


def _held(campaign: Campaign, now: datetime) -> bool:
    return campaign.hold_until is not None and campaign.hold_until > now


async def _first_of(events: Sequence[asyncio.Event], timeout: float) -> None:
    """Wait until one of `events` is set, or `timeout` seconds."""
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
