"""Opt-outs re-checked before send: an opt-out stored while contacts of that phone are already
claimed (queued for the rate limiter, or in a worker's hands) must not be sent.

The opt-out statements (`record_inbound`, `marketing_stop` in sql/queries/listening.sql) stop
the phone's unclaimed contacts and NOTIFY `wa_sender_opt_outs` with the phones; every daemon
takes the claimed contacts of those phones out of its queues and gives them back, and the
release statement makes them *Sending failed* `opted out: ...` (the state the opt-out gives
unclaimed contacts). A marketing-only stop drops the contacts of MARKETING (or uncategorised)
campaigns only. Fallback for a NOTIFY missed (the listening connection was away): the
suppressions added since the last look are read every `POLL_EVERY_S`.

Nothing of this is on the send path: a notification scans the queues once; the workers check
what they hold with the `lost` set they already check before every request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from daemon.core.templates import MARKETING
from daemon.db.pool import CONNECTION_ERRORS
from daemon.db.sql import query
from daemon.engine.claimer import Work
from daemon.engine.workqueue import WorkQueue
from daemon.logs import get_logger

log = get_logger(__name__)

OPT_OUTS_CHANNEL = "wa_sender_opt_outs"
POLL_EVERY_S = 0.5
# A suppression's created_at is its transaction's start: one that commits late may carry a
# time before the last look. Each look reads again this far back (dropping is idempotent).
POLL_OVERLAP_S = 5.0


class Holder(Protocol):
    """The sender, as the watch sees it."""

    async def drop_opted_out(self, phones: Collection[str], marketing_only: bool) -> int:
        """Give back the held contacts of these phones (of marketing campaigns only); how
        many."""
        ...


def marketing_like(work: Work) -> bool:
    """Whether a marketing-only stop applies to the contact's campaign (MARKETING, or of
    unknown category, as in the SQL)."""
    category = work.campaign.template_spec.definition.category
    return not category or category.upper() == MARKETING


def opted_out(phones: Collection[str], marketing_only: bool) -> Callable[[Work], bool]:
    """Whether a held contact is one the opt-out of these phones stops."""

    def opted(work: Work) -> bool:
        return work.contact.phone in phones and (not marketing_only or marketing_like(work))

    return opted


def take_from(queues: Iterable[WorkQueue[Work]], opted: Callable[[Work], bool]) -> list[int]:
    """Take the contacts `opted` stops out of the queues; their ids."""
    return [w.contact.id for queue in queues for w in queue.take_where(opted)]


def parse_payload(payload: str) -> tuple[list[str] | None, bool]:
    """The phones of a NOTIFY (None: too many, read the list) and whether marketing only."""
    try:
        document = json.loads(payload)
        phones = document.get("phones")
        marketing_only = document.get("scope") == "marketing"
    except (ValueError, AttributeError):
        return None, False
    if phones is not None and not (
        isinstance(phones, list) and all(isinstance(p, str) for p in phones)
    ):
        return None, marketing_only
    return phones, marketing_only


class OptOutWatch:
    """Drops held contacts of phones that opted out: on NOTIFY (`on_notify`, on the
    daemon's listening connection) and from the list every POLL_EVERY_S (`run_poll`)."""

    def __init__(self, pool: asyncpg.Pool, holder: Holder) -> None:
        self._pool = pool
        self._holder = holder
        self._since: datetime | None = None
        self._poll_now = asyncio.Event()
        self._pending: set[asyncio.Task[int]] = set()
        self.dropped = 0

    def on_notify(self, payload: str | None) -> None:
        """A NOTIFY (None: the listener (re)connected, read the list now)."""
        phones, marketing_only = parse_payload(payload) if payload else (None, False)
        if phones is None:
            self._poll_now.set()
            return
        task = asyncio.ensure_future(self._drop(phones, marketing_only))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _drop(self, phones: Collection[str], marketing_only: bool) -> int:
        dropped = await self._holder.drop_opted_out(frozenset(phones), marketing_only)
        if dropped:
            self.dropped += dropped
            log.info("opted_out_contacts_dropped", contacts=dropped, marketing_only=marketing_only)
        return dropped

    async def poll_once(self, conn: asyncpg.Connection) -> int:
        """Read the suppressions added since the last look and drop their held contacts."""
        if self._since is None:
            self._since = await conn.fetchval(query("suppressions_now"))
            return 0
        rows = await conn.fetch(
            query("suppressions_since"), self._since - timedelta(seconds=POLL_OVERLAP_S)
        )
        if rows:
            self._since = max(self._since, rows[-1]["created_at"])
        everywhere = [r["phone"] for r in rows if r["scope"] == "all"]
        marketing = [r["phone"] for r in rows if r["scope"] != "all"]
        dropped = 0
        if everywhere:
            dropped += await self._drop(everywhere, False)
        if marketing:
            dropped += await self._drop(marketing, True)
        return dropped

    async def run_poll(self) -> None:
        """The fallback: `poll_once` every POLL_EVERY_S. Runs until cancelled."""
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await self.poll_once(conn)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError, OSError) as exc:
                log.warning("opt_out_poll_failed", error=repr(exc))
            except Exception as exc:  # a bug: the NOTIFY path still works, keep looking
                log.error("opt_out_poll_bug", error=repr(exc))
            self._poll_now.clear()
            try:
                await asyncio.wait_for(self._poll_now.wait(), POLL_EVERY_S)
            except TimeoutError:
                pass
