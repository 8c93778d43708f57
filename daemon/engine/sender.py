"""The sender pipeline: claim -> rate limit -> send -> record.

The claimer (`engine.claimer`) fills a queue per sending phone number and fences the claims.
Each number has `concurrency` long-lived send workers: a worker takes the next contact
of its number's queue and waits for that number's token bucket (one worker per number at a
time), takes one of the `concurrency` daemon-wide send slots, checks the claim, sends, and
hands the result to the recorder. Taking, pacing and sending in the same task, and without a
coroutine when a contact and a token are there, costs no task switch per message."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta

import asyncpg

from daemon.config import Config
from daemon.core.breaker import RefusalBreaker
from daemon.core.decide import SENT, UnknownPolicy, decide
from daemon.core.model import Campaign, CampaignId
from daemon.core.outcomes import TEMPLATE_CODES, Outcome, OutcomeKind
from daemon.core.payload import encode_callback_data
from daemon.core.ratelimit import RateLimiters, TokenBucket
from daemon.core.retry import RetryPolicy, database_retrying
from daemon.db import sender_store as store
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.engine.claimer import Claimer, Work, utc_now
from daemon.engine.optout_watch import opted_out, take_from
from daemon.engine.preparer import CampaignPreparer
from daemon.engine.recorder import ResultRecorder
from daemon.engine.sender_stats import SenderStats
from daemon.engine.sender_writes import SenderWrites
from daemon.engine.slots import Slots
from daemon.engine.workqueue import WorkQueue
from daemon.logs import get_logger
from daemon.whatsapp.client import CloudApiClient

log = get_logger(__name__)

# uvloop's timers have millisecond resolution: a shorter sleep fires at once, and waiting for
# the next token became a busy loop (0.9 of a core at 1,000 msg/s). Sleeping a little longer
# costs no rate: the bucket keeps the tokens that accrue meanwhile (up to the burst).
MIN_RATE_SLEEP_S = 0.001
# A worker waiting that long for a token checks in between whether its campaign was stopped.
STOP_CHECK_S = 0.05
# At shutdown, the final writes get at least this long (after the in-flight sends' drain).
MIN_SHUTDOWN_WRITES_S = 3.0
# A worker whose taking or checking failed (a bug) waits this long before it tries again.
WORKER_FAILURE_PAUSE_S = 0.1
# Enum members read from their class cost a Python-level lookup on 3.11 (~0.2 us): the hot
# path compares with these.
_ACCEPTED = OutcomeKind.ACCEPTED
_THROTTLED = OutcomeKind.THROTTLED
_FATAL = OutcomeKind.FATAL
_UNKNOWN = OutcomeKind.UNKNOWN


SendObserver = Callable[[Work, Outcome, float], None]


class Sender:
    """Sends claimed contacts through per-number workers, paced by the rate limiters, and hands
    every result to the recorder; `run` claims (through its Claimer), `shutdown` drains."""

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
        preparer: CampaignPreparer | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
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
        recovery = config.recovery
        self._unknown = UnknownPolicy(
            recovery.unknown_outcome, recovery.grace_s, recovery.max_unknown_outcomes
        )
        self._queues: dict[str, WorkQueue[Work]] = {}
        self._pacing: dict[str, asyncio.Lock] = {}  # one worker per number waits for a token
        # Sends in flight, daemon-wide: uncontended with one number (as many workers as slots).
        self._slots = Slots(config.sender.concurrency)
        self._workers: list[asyncio.Task[None]] = []
        self._in_hand: dict[asyncio.Task[None], Work] = {}  # worker -> taken, not yet sending
        self._releasing: set[int] = set()  # contacts being given back (see `_release`)
        self._opted_out: set[int] = set()  # held by a worker, phone opted out: give back
        self._inflight: dict[asyncio.Task[None], Work] = {}  # worker -> the contact it sends
        # Set by the last send to finish once stopping; only `shutdown` waits for it.
        self._none_inflight = asyncio.Event()
        self._stopping = False
        self.preparer = preparer or CampaignPreparer(config)
        self._claims = Claimer(pool, config, daemon_id, limiters, self, self.preparer, wall_clock)
        self._claims.writes = recorder
        self._breaker = RefusalBreaker(config.sender.breaker_threshold)
        self.stats = SenderStats()
        self._writes = SenderWrites(pool, config, daemon_id, recorder)
        self.unwritten = self._writes.unwritten  # what the shutdown could not write

    # -- public -------------------------------------------------------------------------

    def wake(self) -> None:
        """A campaign started or resumed (NOTIFY), or a retry fell due."""
        self._claims.wake()

    def note_heartbeat(self, started: float) -> None:
        """A heartbeat sent at `started` was written (see `Claimer.note_heartbeat`)."""
        self._claims.note_heartbeat(started)

    @property
    def claimed(self) -> int:
        """Contacts claimed since the start."""
        return self._claims.claimed

    @property
    def queued(self) -> int:
        """Contacts claimed and not yet sending."""
        return sum(len(q) for q in self._queues.values()) + len(self._in_hand)

    @property
    def inflight(self) -> int:
        """Sends in flight."""
        return len(self._inflight)

    def rates(self) -> dict[str, tuple[float, float]]:
        """Each sending number's (configured share, effective) rate now."""
        return {
            number: (bucket.configured_rate, bucket.effective_rate)
            for number, bucket in self._limiters.buckets().items()
        }

    def heartbeat_age_s(self) -> float:
        """Seconds since the last heartbeat that reached the database was sent."""
        return self._claims.heartbeat_age_s()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim until `stop` is set; then drain (see `shutdown`)."""
        await self._claims.run(stop)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop sending: release what is queued, let in-flight sends finish within `timeout_s`,
        give the rest the unknown-outcome policy, flush every result. A database that does
        not take these writes by then leaves them in `unwritten` (for the spool)."""
        self._stopping = True
        deadline = time.monotonic() + max(timeout_s, MIN_SHUTDOWN_WRITES_S)
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
        await self._release([w.contact.id for w in unsent] + sorted(self._releasing), deadline)
        if self._inflight:
            self._none_inflight.clear()
            waiter = asyncio.ensure_future(self._none_inflight.wait())
            await asyncio.wait([waiter], timeout=timeout_s)
            waiter.cancel()
        cut_off = list(self._inflight.values())
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        # The writes get what is left of the timeout, and a few seconds at least.
        deadline = max(deadline, time.monotonic() + MIN_SHUTDOWN_WRITES_S)
        self.unwritten.results = await self._recorder.close(deadline)
        await self.preparer.close()
        if cut_off:
            await self._expire_unknown([w.contact.id for w in cut_off], deadline)
        log.info(
            "sender_stopped",
            released=len(unsent),
            cut_off=len(cut_off),
            sent=self.stats.sent,
            outcomes=self.stats.outcomes,
            unwritten=self.unwritten.count,
        )

    # -- what the claimer sees (ClaimHolder) ---------------------------------------------

    def queue_for(self, phone_number_id: str) -> WorkQueue[Work]:
        """The queue of a sending number, made with its send workers on first use."""
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

    def held(self) -> list[Work]:
        """Every contact taken by a worker or queued, not yet sending."""
        return [*self._in_hand.values(), *(w for q in self._queues.values() for w in q.items)]

    def sending(self, campaign_id: CampaignId) -> bool:
        """Whether a send of this campaign is in flight."""
        return any(w.campaign.id == campaign_id for w in self._inflight.values())

    async def release(self, ids: list[int]) -> None:
        """Give back contacts claimed and never sent (see `store.release_contacts`)."""
        await self._release(ids)

    # -- campaign stops (engine.stops) ---------------------------------------------------

    def stop_campaigns(self, stopped: Mapping[CampaignId, int]) -> None:
        """Paused or canceled campaigns, with their stop numbers: from now on no send of
        theirs starts (checked right before each request)."""
        self._claims.stop_campaigns(stopped)

    async def drop_campaigns(self, campaign_ids: Collection[CampaignId]) -> int:
        """Release the queued contacts of these campaigns; how many. Those a worker holds are
        released by the worker itself, before it would send."""
        dropped: list[int] = [
            w.contact.id
            for queue in self._queues.values()
            for w in queue.take_where(lambda w: w.campaign.id in campaign_ids)
        ]
        await self._release(dropped)
        return len(dropped)

    async def drop_opted_out(self, phones: Collection[str], marketing_only: bool) -> int:
        """Give back the held contacts of phones that opted out (`engine.optout_watch`; a
        worker gives back what it holds, unsent); how many."""
        opted = opted_out(phones, marketing_only)
        dropped = take_from(self._queues.values(), opted)
        held = {w.contact.id for w in self._in_hand.values() if opted(w)}
        self._opted_out |= held
        self._claims.lost |= held
        await self._release(dropped)
        return len(dropped) + len(held)

    def holds(self, campaign_ids: Collection[CampaignId]) -> bool:
        """Whether any contact of these campaigns is queued, in a worker's hands, in flight,
        or being claimed."""
        if self._claims.claiming in campaign_ids:
            return True
        return any(
            w.campaign.id in campaign_ids
            for w in (*self._in_hand.values(), *self._inflight.values(), *self.held())
        )

    # -- take, pace and send ------------------------------------------------------------

    async def _send_worker(self, phone_number_id: str, queue: WorkQueue[Work]) -> None:
        me = asyncio.current_task()
        assert me is not None
        low_water = self._claims.capacity(phone_number_id) // 2
        room = self._claims.room
        pacing = self._pacing[phone_number_id]
        bucket = self._limiters.bucket(phone_number_id)  # rate changes keep the same bucket
        loop = asyncio.get_running_loop()  # each lookup costs a getpid() on 3.11
        queued = queue.items
        recorder = self._recorder
        while not self._stopping:
            if recorder.blocked:  # the database blocks writes: no send starts until it takes them
                await recorder.wait_unblocked()
                continue
            # Inline, not a helper coroutine: at full speed a coroutine per message costs.
            try:
                # Held from here until its send starts: a shutdown meanwhile releases it.
                work = self._take_now(me, pacing, bucket, queued, loop) or await self._take_paced(
                    me, pacing, bucket, queue
                )
                if len(queued) <= low_water:
                    room.set()
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
                if work.campaign.id not in self._claims.sendable:
                    break  # stopped meanwhile: released by the check that follows, unsent
                self.stats.rate_wait_s += delay
                # In slices: a pause must not wait for a token due seconds from now.
                await asyncio.sleep(max(min(delay, STOP_CHECK_S), MIN_RATE_SLEEP_S))
        return work

    def _cleared_now(self, work: Work) -> bool:
        """The common case of `_cleared_to_send`, without a coroutine."""
        claims = self._claims
        return (
            work.campaign.id in claims.sendable
            and claims.fence_clear(work)
            and work.contact.id not in claims.lost
        )

    async def _cleared_to_send(self, work: Work, queue: WorkQueue[Work]) -> bool:
        """Checked after pacing, which may take long at a low rate: the campaign still runs
        (else its queued contacts are released) and the claim is still ours (fencing)."""
        claims = self._claims
        while True:  # every await below may change the answer: checked again after it
            if work.campaign.id not in claims.sendable:
                halted = queue.take_where(lambda other: other.campaign.id == work.campaign.id)
                await self._release([work.contact.id, *(w.contact.id for w in halted)])
                return False
            if work.contact.id in claims.lost:  # another daemon recovered it, or opted out
                if work.contact.id in self._opted_out:
                    self._opted_out.discard(work.contact.id)
                    claims.lost.discard(work.contact.id)
                    await self._release([work.contact.id])
                return False
            if claims.fence_clear(work):
                return True
            await claims.fence(work)

    async def _send(self, work: Work, bucket: TokenBucket, loop: asyncio.AbstractEventLoop) -> None:
        contact, campaign = work.contact, work.campaign
        callback = encode_callback_data(campaign.id, contact.id, contact.attempt)
        try:
            body = work.build(contact.phone, contact.params, callback)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            missing = f"no value for {exc}" if isinstance(exc, KeyError) else str(exc)
            outcome = Outcome(OutcomeKind.PERMANENT, error_title=f"cannot build message: {missing}")
        else:
            started = time.monotonic()
            outcome = await self._client.send(
                campaign.phone_number_id, body, attempt=contact.attempt, endpoint=work.endpoint
            )
            took = time.monotonic() - started
            for observe in self.send_observers:
                observe(work, outcome, took)
        kind = outcome.kind
        self.stats.count(kind)
        now = datetime.now(UTC)
        tripped: str | None = None
        if kind is _ACCEPTED:
            self.stats.sent += 1
            bucket.on_success(loop.time())
            decision = SENT  # what `decide` makes of every accepted send, without the call
            streaks = self._breaker.streaks
            if streaks:  # an accepted send ends the campaign's run of refusals
                streaks.pop(campaign.id, None)
        else:
            if kind is _FATAL:
                await self._halt_campaign(campaign, outcome)
                await self._release([contact.id])
                return
            if kind is _THROTTLED:
                bucket.on_throttled(loop.time(), outcome.retry_after_s)
            elif kind is _UNKNOWN:
                self.stats.unknown_outcome += 1
            tripped = self._breaker.observe(campaign.id, outcome)
            decision = decide(
                outcome,
                contact.counted_attempt,
                self._policy,
                now,
                self._unknown,
                contact.attempt - contact.counted_attempt,
            )
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
        if tripped is not None:
            self._breaker.forget(campaign.id)
            await self._halt_campaign(
                campaign, Outcome(_FATAL, error_code=outcome.error_code, fatal_reason=tripped)
            )

    # -- campaign-fatal errors ----------------------------------------------------------

    async def _halt_campaign(self, campaign: Campaign, outcome: Outcome) -> None:
        if not self._claims.halt(campaign.id):
            return
        reason = outcome.fatal_reason or f"campaign-fatal API error {outcome.error_code}"
        async for attempt in database_retrying(RETRYABLE_ERRORS, log, operation="halt_campaign"):
            with attempt:
                async with self._pool.acquire() as conn:
                    if outcome.resume_after_s:
                        until = datetime.now(UTC) + timedelta(seconds=outcome.resume_after_s)
                        await store.set_campaign_hold(conn, [campaign.id], reason, until)
                    else:
                        by = "meta" if outcome.error_code in TEMPLATE_CODES else "daemon"
                        await store.pause_campaign_fatal(conn, campaign.id, reason, by)
        log.error(
            "campaign_halted",
            campaign_id=campaign.id,
            code=outcome.error_code,
            reason=reason,
            resumes_in_s=outcome.resume_after_s,
        )
        if outcome.resume_after_s:
            loop = asyncio.get_running_loop()
            loop.call_later(outcome.resume_after_s, self._claims.unhalt, campaign.id)

    async def _release(self, ids: list[int], deadline: float | None = None) -> None:
        if not ids:
            return
        # Until written, the ids stay here: a worker cancelled at shutdown in the middle of
        # this write (its queue's contacts already taken out) must not strand them.
        self._releasing.update(ids)
        written = await self._writes.release(ids, deadline)
        self._releasing.difference_update(ids)
        if written:
            self.stats.released += len(ids)

    async def _expire_unknown(self, ids: list[int], deadline: float | None = None) -> None:
        await self._writes.expire_unknown(ids, deadline)
        self.stats.unknown_outcome += len(ids)
