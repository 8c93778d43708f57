"""The sender pipeline: claim -> rate limit -> send -> record.

One claim loop fills a queue per sending phone number (never more than can be sent within a
lease). Each number has `concurrency` long-lived send workers: a worker takes the next contact
of its number's queue and waits for that number's token bucket (one worker per number at a
time), takes one of the `concurrency` daemon-wide send slots, checks the claim, sends, and
hands the result to the recorder. Taking, pacing and sending in the same task, and without a
coroutine when a contact and a token are there, costs no task switch per message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from daemon.config import Config
from daemon.core.decide import SENT, decide
from daemon.core.model import Campaign, CampaignId
from daemon.core.outcomes import Outcome, OutcomeKind
from daemon.core.payload import build_template_message, encode_body, encode_callback_data
from daemon.core.ratelimit import RateLimiters, TokenBucket
from daemon.core.retry import RetryPolicy, database_retrying
from daemon.db import sender_store as store
from daemon.db.pool import CONNECTION_ERRORS
from daemon.engine.recorder import ResultRecorder
from daemon.engine.slots import Slots
from daemon.engine.upkeep import DEAD_AFTER_S
from daemon.engine.workqueue import WorkQueue
from daemon.logs import get_logger
from daemon.whatsapp.client import CloudApiClient

log = get_logger(__name__)

FINISH_CHECK_EVERY_S = 1.0
QUEUE_S = 0.5
# Sending stops when this daemon has not heartbeated for this long: past DEAD_AFTER_S other
# daemons may recover its claims, so it must renew them before sending again.
FENCE_AFTER_S = DEAD_AFTER_S * 0.6
# uvloop's timers have millisecond resolution: a shorter sleep fires at once, and waiting for
# the next token became a busy loop (0.9 of a core at 1,000 msg/s). Sleeping a little longer
# costs no rate: the bucket keeps the tokens that accrue meanwhile (up to the burst).
MIN_RATE_SLEEP_S = 0.001
# A worker whose taking or checking failed (a bug) waits this long before it tries again.
WORKER_FAILURE_PAUSE_S = 0.1
# Enum members read from their class cost a Python-level lookup on 3.11 (~0.2 us): the hot
# path compares with these.
_ACCEPTED = OutcomeKind.ACCEPTED
_THROTTLED = OutcomeKind.THROTTLED
_FATAL = OutcomeKind.FATAL


@dataclass(slots=True)
class Work:
    contact: store.ClaimedContact
    campaign: Campaign
    claimed_at: float  # monotonic


@dataclass
class SenderStats:
    claimed: int = 0
    sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    released: int = 0
    unknown_outcome: int = 0
    rate_wait_s: float = 0.0

    def count(self, kind: OutcomeKind) -> None:
        # The member itself is the key: a StrEnum hashes and compares as its value, and
        # reading `.value` goes through a Python-level property on every send.
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1


SendObserver = Callable[[Work, Outcome, float], None]


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: CloudApiClient,
        config: Config,
        daemon_id: str,
        limiters: RateLimiters,
        recorder: ResultRecorder,
        *,
        on_send: SendObserver | None = None,
    ) -> None:
        self._pool = pool
        self._client = client
        self._config = config
        self._daemon_id = daemon_id
        self._limiters = limiters
        self._recorder = recorder
        self.send_observers: list[SendObserver] = [on_send] if on_send else []
        self._policy = RetryPolicy(
            config.sender.max_attempts, config.sender.retry_initial_s, config.sender.retry_max_s
        )
        self._queues: dict[str, WorkQueue[Work]] = {}
        self._pacing: dict[str, asyncio.Lock] = {}  # one worker per number waits for a token
        # Sends in flight, daemon-wide: uncontended with one number (as many workers as slots).
        self._slots = Slots(config.sender.concurrency)
        self._workers: list[asyncio.Task[None]] = []
        self._in_hand: dict[asyncio.Task[None], Work] = {}  # worker -> taken, not yet sending
        self._inflight: dict[asyncio.Task[None], Work] = {}  # worker -> the contact it sends
        # Set by the last send to finish once stopping; only `shutdown` waits for it.
        self._none_inflight = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._stopping = False
        self._halted: set[CampaignId] = set()
        self._sendable: set[CampaignId] = set()
        self._claim_cursor: dict[CampaignId, int] = {}
        self._finish_checked: dict[CampaignId, float] = {}
        self._last_heartbeat = time.monotonic()
        self._claims_in_doubt = False
        self._fence_lock = asyncio.Lock()
        self._lease_margin = config.recovery.lease_s * 0.8
        self._lost: set[int] = set()
        self.stats = SenderStats()

    # -- public -------------------------------------------------------------------------

    def wake(self) -> None:
        """A campaign started or resumed (NOTIFY), or a retry fell due."""
        self._wake.set()

    def note_heartbeat(self) -> None:
        """This daemon is alive in the database's eyes; after a long silence its queued claims
        are in doubt until renewed."""
        now = time.monotonic()
        if now - self._last_heartbeat > FENCE_AFTER_S:
            self._claims_in_doubt = True
        self._last_heartbeat = now

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values()) + len(self._in_hand)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim until `stop` is set; then drain (see `shutdown`)."""
        async for attempt in database_retrying(
            CONNECTION_ERRORS, log, operation="claim_loop", max_s=5.0
        ):
            with attempt:
                await self._claim_loop(stop)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop sending: release what is queued, let in-flight sends finish within `timeout_s`,
        give the rest the unknown-outcome policy, flush every result."""
        self._stopping = True
        # Workers not sending stop where they wait; those sending finish and then stop.
        waiting = [task for task in self._workers if task not in self._inflight]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        unsent = [
            *self._in_hand.values(),
            *(w for q in self._queues.values() for w in q.take_all()),
        ]
        self._in_hand.clear()
        await self._release([w.contact.id for w in unsent])
        if self._inflight:
            self._none_inflight.clear()
            waiter = asyncio.ensure_future(self._none_inflight.wait())
            await asyncio.wait([waiter], timeout=timeout_s)
            waiter.cancel()
        cut_off = list(self._inflight.values())
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._recorder.close()
        if cut_off:
            await self._expire_unknown([w.contact.id for w in cut_off])
        log.info(
            "sender_stopped",
            released=len(unsent),
            cut_off=len(cut_off),
            sent=self.stats.sent,
            outcomes=self.stats.outcomes,
        )

    # -- claim --------------------------------------------------------------------------

    def _capacity(self, phone_number_id: str) -> int:
        """Most contacts to hold queued for a number: about QUEUE_S seconds of sending (what a
        crash strands, and how long a claimed contact waits), never more than half a lease."""
        rate = self._limiters.bucket(phone_number_id).configured_rate
        by_time = int(rate * QUEUE_S)
        by_lease = int(rate * self._config.recovery.lease_s * 0.5)
        return max(1, min(2 * self._config.sender.batch_size, by_time, by_lease))

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        batch = self._config.sender.batch_size
        while not stop.is_set():
            self._wake.clear()
            self._room.clear()
            async with self._pool.acquire() as conn:
                campaigns = await store.running_campaigns(conn)
                now = datetime.now(UTC)
                self._halted &= {c.id for c in campaigns}
                # Queued contacts of a campaign paused or canceled meanwhile are released.
                self._sendable = {
                    c.id for c in campaigns if c.id not in self._halted and not _held(c, now)
                }
                claimed, full = 0, False
                for campaign in campaigns:
                    if campaign.id not in self._sendable:
                        continue
                    capacity = self._capacity(campaign.phone_number_id)
                    want = min(capacity - len(self._queue(campaign.phone_number_id)), batch)
                    if want < min(batch, capacity) // 2:  # refill by at least half a batch
                        full = True
                        continue
                    got = await self._claim(conn, campaign, want)
                    claimed += got
                    if got == 0:
                        await self._maybe_finish(conn, campaign)
                    elif got == want:
                        full = True
                idle_s = 0.0 if claimed or full else await self._idle_wait(conn, campaigns)
            if stop.is_set():
                return
            if claimed and not full:
                continue  # more may be due right away
            events = [self._wake, stop, *([self._room] if full else [])]
            await _first_of(events, (0.2 if claimed else 1.0) if full else idle_s)

    async def _claim(self, conn: asyncpg.Connection, campaign: Campaign, limit: int) -> int:
        lease_s = self._config.recovery.lease_s
        daily_limit = self._config.limits.daily_unique_recipients
        after_id = self._claim_cursor.get(campaign.id, 0)
        if daily_limit > 0:
            claimed, quota, oldest = await store.claim_within_limit(
                conn, campaign.id, self._daemon_id, lease_s, limit, daily_limit, after_id
            )
            if not claimed and quota <= 0:
                frees_at = (oldest or datetime.now(UTC)) + timedelta(hours=24)
                reason = (
                    f"messaging limit reached: {daily_limit} unique recipients per rolling 24 h;"
                    f" next slot frees at {frees_at:%Y-%m-%d %H:%M:%S} UTC"
                )
                await store.set_campaign_hold(conn, [campaign.id], reason, frees_at)
                log.warning("messaging_limit_reached", campaign_id=campaign.id, limit=daily_limit)
                return 0
        else:
            claimed = await store.claim_contacts(
                conn, campaign.id, self._daemon_id, lease_s, limit, after_id
            )
        # Walk the campaign forward; a short claim means the end was reached: start over, for
        # retries that fell due behind the cursor and contacts released by others.
        self._claim_cursor[campaign.id] = max(c.id for c in claimed) if len(claimed) == limit else 0
        if claimed and campaign.hold_reason:
            await store.clear_campaign_hold(conn, campaign.id)
        now = time.monotonic()
        self._queue(campaign.phone_number_id).put_many(
            [Work(contact, campaign, now) for contact in claimed]
        )
        if claimed:
            self.stats.claimed += len(claimed)
            log.debug("batch_claimed", campaign_id=campaign.id, count=len(claimed))
        return len(claimed)

    async def _maybe_finish(self, conn: asyncpg.Connection, campaign: Campaign) -> None:
        now = time.monotonic()
        if now - self._finish_checked.get(campaign.id, 0.0) < FINISH_CHECK_EVERY_S:
            return
        self._finish_checked[campaign.id] = now
        if any(w.campaign.id == campaign.id for w in self._inflight.values()):
            return
        if await store.finish_campaign_if_done(conn, campaign.id):
            log.info("campaign_finished", campaign_id=campaign.id)

    async def _idle_wait(self, conn: asyncpg.Connection, campaigns: list[Campaign]) -> float:
        """Seconds to sleep when there is nothing to claim: until the next retry falls due,
        a held campaign's hold ends, or the idle poll, whichever is first."""
        timeout = self._config.sender.idle_poll_s
        if not campaigns:
            return timeout
        now = datetime.now(UTC)
        due = await store.next_retry_due(conn)
        candidates = [due, *(c.hold_until for c in campaigns)]
        for moment in candidates:
            if moment is not None:
                timeout = min(timeout, max(0.05, (moment - now).total_seconds()))
        if any(c.id in self._finish_checked for c in campaigns):
            timeout = min(timeout, FINISH_CHECK_EVERY_S)
        return timeout

    # -- take, pace and send ------------------------------------------------------------

    def _queue(self, phone_number_id: str) -> WorkQueue[Work]:
        queue = self._queues.get(phone_number_id)
        if queue is None:
            queue = self._queues[phone_number_id] = WorkQueue()
            self._pacing[phone_number_id] = asyncio.Lock()
            self._workers += [
                asyncio.create_task(
                    self._send_worker(phone_number_id, queue),
                    name=f"send-{phone_number_id}-{i}",
                )
                for i in range(self._config.sender.concurrency)
            ]
        return queue

    async def _send_worker(self, phone_number_id: str, queue: WorkQueue[Work]) -> None:
        me = asyncio.current_task()
        assert me is not None
        low_water = self._capacity(phone_number_id) // 2
        pacing = self._pacing[phone_number_id]
        bucket = self._limiters.bucket(phone_number_id)  # rate changes keep the same bucket
        loop = asyncio.get_running_loop()  # each lookup costs a getpid() on 3.11
        queued = queue.items
        while not self._stopping:
            # Inline, not a helper coroutine: at full speed a coroutine per message costs.
            try:
                # Held from here until its send starts: a shutdown meanwhile releases it.
                work = self._take_now(me, pacing, bucket, queued, loop) or await self._take_paced(
                    me, pacing, bucket, queue
                )
                if len(queued) <= low_water:
                    self._room.set()
                if not self._slots.try_take():
                    await self._slots.take()
                try:
                    cleared = self._cleared_now(work) or await self._cleared_to_send(work, queue)
                except BaseException:
                    self._slots.give()
                    raise
            except Exception as exc:  # a bug: give the contact back, keep the worker
                await self._worker_failed(me, exc)
                continue
            del self._in_hand[me]
            if not cleared:
                self._slots.give()
                continue
            # No await between the last check and the request: shutdown now waits for us.
            self._inflight[me] = work
            try:
                await self._send(work, bucket, loop)
            except Exception as exc:  # a bug; the contact's lease recovers it
                log.error("send_task_failed", error=repr(exc), contact_id=work.contact.id)
            finally:
                self._slots.give()
            del self._inflight[me]
            if self._stopping and not self._inflight:
                self._none_inflight.set()

    async def _worker_failed(self, me: asyncio.Task[None], exc: Exception) -> None:
        log.error("send_worker_failed", worker=me.get_name(), error=repr(exc))
        held = self._in_hand.pop(me, None)
        if held is not None:
            await self._release([held.contact.id])
        await asyncio.sleep(WORKER_FAILURE_PAUSE_S)

    def _take_now(
        self,
        me: asyncio.Task[None],
        pacing: asyncio.Lock,
        bucket: TokenBucket,
        queued: deque[Work],
        loop: asyncio.AbstractEventLoop,
    ) -> Work | None:
        """The next contact if it may go at once (none waiting for a token, and one there):
        taken without a coroutine, the common case at full speed."""
        if pacing.locked() or not queued:
            return None
        if bucket.take(loop.time()) > 0:
            return None
        work = self._in_hand[me] = queued.popleft()
        return work

    async def _take_paced(
        self,
        me: asyncio.Task[None],
        pacing: asyncio.Lock,
        bucket: TokenBucket,
        queue: WorkQueue[Work],
    ) -> Work:
        """The next contact, once there is one and a token for it. One worker per number
        waits at a time; the others wait for it holding nothing, so a pause or a crash finds
        them empty-handed."""
        async with pacing:
            work = self._in_hand[me] = await queue.take()
            loop = asyncio.get_running_loop()
            while (delay := bucket.take(loop.time())) > 0:
                self.stats.rate_wait_s += delay
                await asyncio.sleep(max(delay, MIN_RATE_SLEEP_S))
        return work

    def _cleared_now(self, work: Work) -> bool:
        """The common case of `_cleared_to_send`, without a coroutine."""
        return (
            work.campaign.id in self._sendable
            and self._fence_clear(work)
            and work.contact.id not in self._lost
        )

    async def _cleared_to_send(self, work: Work, queue: WorkQueue[Work]) -> bool:
        """Checked after pacing, which may take long at a low rate: the campaign still runs
        (else its queued contacts are released) and the claim is still ours (fencing)."""
        if work.campaign.id not in self._sendable:
            halted = queue.take_where(lambda other: other.campaign.id == work.campaign.id)
            await self._release([work.contact.id, *(w.contact.id for w in halted)])
            return False
        if not self._fence_clear(work):
            await self._fence(work)
        return work.contact.id not in self._lost  # else another daemon recovered it

    def _fence_clear(self, work: Work) -> bool:
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

    async def _fence(self, work: Work) -> None:
        """Fencing: never send a claim another daemon may have recovered. Waits while the
        database is away, then renews the queued claims; those lost end up in `_lost`."""
        while time.monotonic() - self._last_heartbeat > FENCE_AFTER_S:
            await asyncio.sleep(0.1)
        if self._needs_renewal(work):
            async with self._fence_lock:
                if self._needs_renewal(work):  # another dispatcher may have renewed meanwhile
                    await self._renew_queued_claims(work)

    async def _renew_queued_claims(self, current: Work) -> None:
        held = [w for w in self._in_hand.values() if w is not current]
        queued = [current, *held, *(w for q in self._queues.values() for w in q.items)]
        ids = [w.contact.id for w in queued]
        kept: set[int] = set()

        async def renew(conn: asyncpg.Connection) -> None:
            nonlocal kept
            kept = await store.renew_claims(
                conn, ids, self._daemon_id, self._config.recovery.lease_s
            )

        await self._write(renew)
        now = time.monotonic()
        for work in queued:
            work.claimed_at = now
        lost = set(ids) - kept
        self._lost |= lost
        self._claims_in_doubt = False
        if lost:
            log.warning("claims_lost", count=len(lost), kept=len(kept))

    async def _send(self, work: Work, bucket: TokenBucket, loop: asyncio.AbstractEventLoop) -> None:
        contact, campaign = work.contact, work.campaign
        callback = encode_callback_data(campaign.id, contact.id, contact.attempt)
        try:
            body = encode_body(
                build_template_message(campaign.template, contact.phone, contact.params, callback)
            )
        except ValueError as exc:
            outcome = Outcome(OutcomeKind.PERMANENT, error_title=f"cannot build message: {exc}")
        else:
            started = time.monotonic()
            outcome = await self._client.send(
                campaign.phone_number_id, body, attempt=contact.attempt
            )
            took = time.monotonic() - started
            for observe in self.send_observers:
                observe(work, outcome, took)
        kind = outcome.kind
        self.stats.count(kind)
        now = datetime.now(UTC)
        if kind is _ACCEPTED:
            self.stats.sent += 1
            bucket.on_success(loop.time())
            decision = SENT  # what `decide` makes of every accepted send, without the call
        else:
            if kind is _FATAL:
                await self._halt_campaign(campaign, outcome)
                await self._release([contact.id])
                return
            if kind is _THROTTLED:
                bucket.on_throttled(loop.time())
            decision = decide(outcome, contact.counted_attempt, self._policy, now)
            log.info(
                "send_failed",
                campaign_id=campaign.id,
                contact_id=contact.id,
                attempt=contact.attempt,
                kind=outcome.kind.value,
                code=outcome.error_code,
                title=outcome.error_title,
                next_state=decision.state.value,
            )
        self._recorder.add(
            store.SendResult(
                contact.id,
                contact.attempt,
                contact.phone,
                decision,
                now,
                outcome.wamid,
                outcome.wa_id,
                outcome.message_status,
            )
        )

    # -- campaign-fatal errors ----------------------------------------------------------

    async def _halt_campaign(self, campaign: Campaign, outcome: Outcome) -> None:
        if campaign.id in self._halted:
            return
        self._halted.add(campaign.id)
        self._sendable.discard(campaign.id)
        reason = outcome.fatal_reason or f"campaign-fatal API error {outcome.error_code}"
        async for attempt in database_retrying(CONNECTION_ERRORS, log, operation="halt_campaign"):
            with attempt:
                async with self._pool.acquire() as conn:
                    if outcome.resume_after_s:
                        until = datetime.now(UTC) + timedelta(seconds=outcome.resume_after_s)
                        await store.set_campaign_hold(conn, [campaign.id], reason, until)
                    else:
                        await store.pause_campaign_fatal(conn, campaign.id, reason)
        log.error(
            "campaign_halted",
            campaign_id=campaign.id,
            code=outcome.error_code,
            reason=reason,
            resumes_in_s=outcome.resume_after_s,
        )
        if outcome.resume_after_s:
            asyncio.get_running_loop().call_later(outcome.resume_after_s, self._unhalt, campaign.id)

    def _unhalt(self, campaign_id: CampaignId) -> None:
        self._halted.discard(campaign_id)
        self.wake()  # the claim loop makes it sendable again if it is still running

    async def _release(self, ids: list[int]) -> None:
        if not ids:
            return
        await self._write(lambda conn: store.release_contacts(conn, ids, self._daemon_id))
        self.stats.released += len(ids)

    async def _expire_unknown(self, ids: list[int]) -> None:
        recovery = self._config.recovery
        await self._write(
            lambda conn: store.expire_own_contacts(
                conn,
                ids,
                recovery.unknown_outcome,
                recovery.grace_s,
                self._config.sender.max_attempts,
                self._daemon_id,
                recovery.max_unknown_outcomes,
            )
        )
        self.stats.unknown_outcome += len(ids)

    async def _write(self, operation: Callable[[asyncpg.Connection], Awaitable[object]]) -> None:
        async for attempt in database_retrying(CONNECTION_ERRORS, log, operation="sender_write"):
            with attempt:
                async with self._pool.acquire() as conn:
                    await operation(conn)


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
