"""Status webhooks of the mock: sent/delivered/read/failed posted back, signed, like Meta.

Each accepted message gets its statuses planned at once (kind, logical timestamp, posting
time); one scheduler task moves due statuses into batches, poster tasks POST them with retries.
Timestamps keep the logical order even when posting order is shuffled (reorder), as on the
real platform where webhooks arrive out of order but carry the event time.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import math
import random
from collections.abc import Iterable
from typing import Any, NamedTuple

import aiohttp
import structlog

from daemon.mockapi.config import DelayRange, ReceiptConfig
from daemon.mockapi.errors import webhook_error
from daemon.mockapi.inbound import (
    STOP_PAYLOAD,
    STOP_TEXTS,
    message_object,
    messages_change,
    reply_content,
    user_id_of,
)
from daemon.mockapi.state import AcceptedMessage
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign

log = structlog.get_logger()

USER_AGENT = "facebookexternalua"


class PlannedStatus(NamedTuple):
    """One status webhook scheduled for an accepted message."""

    due: float
    """Loop time at which the status is posted."""
    order: int
    wamid: str
    status: str
    timestamp: int
    """Epoch seconds of the event (logical order, whatever the posting order)."""
    phone_number_id: str
    recipient_id: str
    callback: str | None
    error_code: int | None
    conversation_id: str
    with_pricing: bool
    expiration: int | None
    text: str | None = None
    """status "inbound": the reply's text (payload: its quick-reply button's)."""
    payload: str | None = None


class ReceiptSender:
    """Plans, batches, signs and posts status webhooks for accepted messages."""

    def __init__(self, config: ReceiptConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "generated",
                "duplicates",
                "reordered",
                "posts",
                "posted",
                "acknowledged",
                "failed_posts",
                "dropped",
                "replies",
                "opt_outs",
            ),
            0,
        )
        self.opted_out: list[str] = []  # wa_ids whose STOP was acknowledged by the webhook
        self._heap: list[PlannedStatus] = []
        self._order = 0
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._crash_event = asyncio.Event()
        # The scheduler sleeps until `_wake_at`: the earliest due status, which opens a window
        # of flush_interval_s; what falls due in it is posted when it closes (in POSTs of at
        # most batch_size), so the loop wakes twice per window, not once per status. A new
        # status wakes it only when due before it would wake anyway.
        self._wake_at = math.inf
        self.wakeups = 0  # of the scheduler: a few per window, however many statuses
        self._waiter: asyncio.Future[None] | None = None
        self._batches: asyncio.Queue[list[PlannedStatus]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._crashed: BaseException | None = None

    @property
    def enabled(self) -> bool:
        """Whether status webhooks are posted at all."""
        return self.config.enabled

    @property
    def pending(self) -> int:
        """Statuses generated but neither acknowledged by the webhook nor given up."""
        return self._pending

    def stats(self) -> dict[str, int]:
        """The counters (generated, posted, acknowledged, dropped, ...) and the pending count."""
        return {**self.counters, "pending": self._pending}

    def opt_out_phones(self) -> list[str]:
        """The wa_ids whose STOP reply the webhook acknowledged."""
        return list(self.opted_out)

    # -- planning -------------------------------------------------------------------------

    def schedule(self, message: AcceptedMessage) -> None:
        """Plan the statuses of a just-accepted message (no-op when receipts are off)."""
        if not self.config.enabled:
            return
        now = asyncio.get_running_loop().time()
        for status in self.plan(message, now):
            self._push(status)
        if self._heap and self._heap[0].due < self._wake_at:
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def plan(self, message: AcceptedMessage, now: float) -> list[PlannedStatus]:
        """The statuses of one message, with posting times from ``now`` (loop clock)."""
        cfg, rng = self.config, self.rng
        steps: list[tuple[str, DelayRange]] = []
        if rng.random() < cfg.failed_rate:
            steps.append(("failed", cfg.failed_delay_s))
        else:
            steps.append(("sent", cfg.sent_delay_s))
            if rng.random() < cfg.delivered_rate:
                steps.append(("delivered", cfg.delivered_delay_s))
                if rng.random() < cfg.read_rate:
                    steps.append(("read", cfg.read_delay_s))
            elif rng.random() < cfg.read_without_delivered_rate:
                steps.append(("read", cfg.read_delay_s))
        offsets: list[float] = []
        elapsed = 0.0
        for _, (low, high) in steps:
            elapsed += rng.uniform(low, high)
            offsets.append(elapsed)
        posting = list(offsets)
        if len(posting) > 1 and rng.random() < cfg.reorder_rate:
            i = rng.randrange(len(posting) - 1)
            posting[i], posting[i + 1] = posting[i + 1], posting[i]
            self.counters["reordered"] += 1

        conversation_id = f"{rng.getrandbits(128):032x}"
        kinds = [kind for kind, _ in steps]
        priced = "delivered" if "delivered" in kinds else "read"
        error_code = rng.choice(cfg.failed_codes) if kinds[0] == "failed" else None
        planned = []
        for kind, offset, post_at in zip(kinds, offsets, posting, strict=True):
            stamp = int(message.accepted_at + offset)
            planned.append(
                PlannedStatus(
                    due=now + post_at,
                    order=0,
                    wamid=message.wamid,
                    status=kind,
                    timestamp=stamp,
                    phone_number_id=message.phone_number_id,
                    recipient_id=message.wa_id,
                    callback=message.biz_opaque_callback_data,
                    error_code=error_code if kind == "failed" else None,
                    conversation_id=conversation_id,
                    with_pricing=cfg.include_pricing and kind in ("sent", priced),
                    expiration=stamp + 86400 if kind == "sent" else None,
                )
            )
        duplicates = [
            status._replace(due=status.due + rng.uniform(*cfg.duplicate_delay_s))
            for status in planned
            if rng.random() < cfg.duplicate_rate
        ]
        self.counters["duplicates"] += len(duplicates)
        if cfg.reply_rate and kinds[0] != "failed":
            draw = rng.random()
            if draw < cfg.reply_rate:
                opt_out = draw < cfg.optout_rate
                text, payload = reply_content(rng, opt_out)
                after = max(posting) + rng.uniform(*cfg.reply_delay_s)
                planned.append(
                    planned[0]._replace(
                        due=now + after,
                        wamid=f"wamid.in.{rng.getrandbits(64):016x}",
                        status="inbound",
                        timestamp=int(message.accepted_at + after),
                        callback=message.wamid,  # the business message it answers
                        error_code=None,
                        with_pricing=False,
                        text=text,
                        payload=payload,
                    )
                )
                self.counters["replies"] += 1
                self.counters["opt_outs"] += opt_out
        return planned + duplicates

    def _push(self, status: PlannedStatus) -> None:
        self._order += 1
        heapq.heappush(self._heap, status._replace(order=self._order))
        self.counters["generated"] += 1
        self._pending += 1
        self._idle.clear()

    def _settle(self, count: int) -> None:
        self._pending -= count
        if self._pending <= 0:
            self._pending = 0
            self._idle.set()

    async def drain(self) -> None:
        """Wait until every generated status was acknowledged or given up.

        Bound it with ``asyncio.timeout`` if the webhook may be down. Raises RuntimeError if
        a receipt task crashed (nothing would ever settle).
        """
        if self._crashed is None:
            waiter = asyncio.ensure_future(self._idle.wait())
            crash = asyncio.ensure_future(self._crash_event.wait())
            try:
                await asyncio.wait((waiter, crash), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                crash.cancel()
        if self._crashed is not None:
            raise RuntimeError("mock receipt task crashed") from self._crashed

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler and the posting tasks (nothing when disabled)."""
        if not self.config.enabled:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.post_timeout_s),
            connector=aiohttp.TCPConnector(limit=self.config.post_concurrency),
        )
        tasks = [asyncio.create_task(self._schedule_loop(), name="mock_receipts_scheduler")]
        for n in range(self.config.post_concurrency):
            tasks.append(asyncio.create_task(self._post_loop(), name=f"mock_receipts_poster_{n}"))
        for task in tasks:
            task.add_done_callback(self._task_done)
        self._tasks = tasks

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._crashed = exc
            self._crash_event.set()
            log.error("mock_receipts_task_crashed", task=task.get_name(), exc_info=exc)

    async def stop(self) -> None:
        """Cancel the tasks and close the HTTP session; statuses left are abandoned."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pending:
            log.info("mock_receipts_abandoned", pending=self._pending)

    # -- scheduling and posting -----------------------------------------------------------

    async def _schedule_loop(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        flush_at: float | None = None  # the open window's end
        while True:
            self.wakeups += 1
            now = loop.time()
            heap = self._heap
            if flush_at is None and heap and heap[0].due <= now:
                flush_at = now + cfg.flush_interval_s
            if flush_at is not None and now >= flush_at:
                due: list[PlannedStatus] = []
                while heap and heap[0].due <= now:
                    due.append(heapq.heappop(heap))
                for start in range(0, len(due), cfg.batch_size):
                    self._batches.put_nowait(due[start : start + cfg.batch_size])
                flush_at = None
                continue  # a status may already be due again: open the next window now
            if flush_at is not None:
                # What falls due meanwhile is collected when the window closes: neither the
                # statuses already planned nor new ones need to wake the loop before that.
                wake_at: float | None = flush_at
                self._wake_at = -math.inf
            else:
                wake_at = heap[0].due if heap else None
                self._wake_at = math.inf if wake_at is None else wake_at
            self._waiter = loop.create_future()
            timer = None if wake_at is None else loop.call_at(wake_at, self._wake)
            try:
                await self._waiter
            finally:
                if timer is not None:
                    timer.cancel()

    async def _post_loop(self) -> None:
        while True:
            batch = await self._batches.get()
            try:
                await self._post(batch)
            finally:
                self._batches.task_done()

    async def _post(self, batch: list[PlannedStatus]) -> None:
        cfg = self.config
        assert self._session is not None and cfg.webhook_url is not None
        body = self.encode(batch)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, cfg.app_secret),
            "X-Hub-Signature": "sha1="
            + hmac.new(cfg.app_secret.encode(), body, hashlib.sha1).hexdigest(),
            "User-Agent": USER_AGENT,
        }
        count = len(batch)
        for attempt in range(1, cfg.max_attempts + 1):
            self.counters["posts"] += 1
            self.counters["posted"] += count
            problem: str
            try:
                async with self._session.post(cfg.webhook_url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        self.counters["acknowledged"] += count
                        self.opted_out.extend(
                            s.recipient_id
                            for s in batch
                            if s.status == "inbound" and is_stop(s.text, s.payload)
                        )
                        self._settle(count)
                        return
                    problem = f"http_{resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            self.counters["failed_posts"] += 1
            log.warning(
                "mock_receipts_post_failed", attempt=attempt, statuses=count, problem=problem
            )
            if attempt < cfg.max_attempts:
                await asyncio.sleep(min(cfg.retry_max_s, cfg.retry_initial_s * 2 ** (attempt - 1)))
        self.counters["dropped"] += count
        self._settle(count)
        log.error("mock_receipts_dropped", statuses=count, attempts=cfg.max_attempts)

    async def post_document(self, document: dict[str, Any]) -> int:
        """Sign and post one webhook body (template, number, preference events) once; the
        HTTP status (0: no answer)."""
        cfg = self.config
        if self._session is None or cfg.webhook_url is None:
            raise RuntimeError("receipts are off: no webhook to post to")
        body = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, cfg.app_secret)}
        try:
            async with self._session.post(cfg.webhook_url, data=body, headers=headers) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    def encode(self, batch: list[PlannedStatus]) -> bytes:
        """The exact bytes posted: escaped-unicode JSON, like Meta signs it."""
        payload = build_payload(batch, self.config, self.rng.random() < self.config.split_rate)
        return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def status_object(
    status: PlannedStatus, category: str, with_conversation: bool = True
) -> dict[str, Any]:
    """One ``statuses[]`` element, keys in the order Meta sends them."""
    out: dict[str, Any] = {
        "id": status.wamid,
        "status": status.status,
        "timestamp": str(status.timestamp),
        "recipient_id": status.recipient_id,
    }
    if status.callback is not None:
        out["biz_opaque_callback_data"] = status.callback
    if status.with_pricing:
        if with_conversation:
            conversation: dict[str, Any] = {"id": status.conversation_id}
            if status.expiration is not None:
                conversation["expiration_timestamp"] = str(status.expiration)
            conversation["origin"] = {"type": category}
            out["conversation"] = conversation
        out["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": category,
        }
    if status.error_code is not None:
        out["errors"] = [webhook_error(status.error_code)]
    return out


def build_payload(
    batch: Iterable[PlannedStatus], config: ReceiptConfig, split: bool = False
) -> dict[str, Any]:
    """A messages-webhook body: one change per phone number (statuses, and inbound replies in
    a change of their own), or several entries/changes."""
    groups: dict[str, list[dict[str, Any]]] = {}
    replies: dict[str, list[dict[str, Any]]] = {}
    recipients: dict[str, set[str]] = {}
    for status in batch:
        if status.status == "inbound":
            replies.setdefault(status.phone_number_id, []).append(
                message_object(
                    status.wamid,
                    status.recipient_id,
                    status.timestamp,
                    status.text or "",
                    status.payload,
                    status.callback,
                )
            )
            continue
        groups.setdefault(status.phone_number_id, []).append(
            status_object(status, config.pricing_category, config.include_conversation)
        )
        recipients.setdefault(status.phone_number_id, set()).add(status.recipient_id)
    changes: list[dict[str, Any]] = []
    for phone_number_id, statuses in groups.items():
        parts = [statuses[: len(statuses) // 2], statuses[len(statuses) // 2 :]]
        for part in parts if split and len(statuses) > 1 else [statuses]:
            value: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": config.display_phone_number,
                    "phone_number_id": phone_number_id,
                },
            }
            if config.include_user_id:
                value["contacts"] = [
                    {"wa_id": wa_id, "user_id": user_id_of(wa_id)}
                    for wa_id in sorted({s["recipient_id"] for s in part})
                ]
            value["statuses"] = part
            changes.append({"value": value, "field": "messages"})
    for phone_number_id, messages in replies.items():
        changes.append(
            messages_change(
                phone_number_id, config.display_phone_number, messages, config.include_user_id
            )
        )
    if split:
        entries = [{"id": config.waba_id, "changes": [change]} for change in changes]
    else:
        entries = [{"id": config.waba_id, "changes": changes}]
    return {"object": "whatsapp_business_account", "entry": entries}


def is_stop(text: str | None, payload: str | None) -> bool:
    """Whether a reply the mock posted is one of its opt-outs."""
    return payload == STOP_PAYLOAD or text in STOP_TEXTS
