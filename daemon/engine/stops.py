"""Campaign stops, as a daemon takes them: a pause or cancel (by an operator, or another
daemon on a campaign-fatal error) is applied at once and then confirmed in the database.

Woken by the campaigns NOTIFY (and a poll every second, for a missed one), the watcher reads
the campaigns stopped since the last stop it confirmed, makes them unsendable at once (no
send of theirs starts after that: every send checks right before its request), releases
their queued contacts, waits until no contact of theirs is in a worker's hands, in flight or
being claimed, flushes the results, and only then confirms the stop number
(`daemons.acked_stop_seq`, with a NOTIFY). `wa-sender campaign pause|cancel` returns once every
daemon that could still send has confirmed (see `ops.lifecycle`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Final, Protocol

import asyncpg

from daemon.core.model import CampaignId
from daemon.db import daemons as store
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.engine.recorder import ResultRecorder
from daemon.logs import get_logger

log = get_logger(__name__)

POLL_S: Final = 1.0
"""Stops are read at least this often, should a NOTIFY be missed (listener reconnecting)."""
QUIET_CHECK_S: Final = 0.005
"""How often the watcher looks whether the last contacts of a stopped campaign are let go."""
RETRY_AFTER_ERROR_S: Final = 0.5


class StoppableSender(Protocol):
    """The sender, as the stop watcher sees it."""

    def stop_campaigns(self, stopped: dict[CampaignId, int]) -> None:
        """No send of these campaigns starts from now on."""
        ...

    async def drop_campaigns(self, campaign_ids: Collection[CampaignId]) -> int:
        """Release their queued contacts; how many."""
        ...

    def holds(self, campaign_ids: Collection[CampaignId]) -> bool:
        """Whether a contact of theirs is still queued, taken, in flight or being claimed."""
        ...


class StopWatcher:
    """Applies and confirms campaign stops for one daemon (`run`, woken by `wake`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        daemon_id: str,
        sender: StoppableSender,
        recorder: ResultRecorder,
        confirmed_seq: int,
    ) -> None:
        self._pool = pool
        self._daemon_id = daemon_id
        self._sender = sender
        self._recorder = recorder
        self._wake = asyncio.Event()
        self.confirmed_seq = confirmed_seq
        """The highest stop number this daemon has confirmed."""

    def wake(self) -> None:
        """A campaign changed (NOTIFY): read the stops now."""
        self._wake.set()

    async def run(self) -> None:
        """Apply and confirm stops until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.apply()
            except RETRYABLE_ERRORS as exc:
                log.warning("campaign_stops_failed", error=repr(exc))
                await asyncio.sleep(RETRY_AFTER_ERROR_S)
                self._wake.set()

    async def apply(self) -> None:
        """One round: read the stops since the last confirmed one, apply, confirm."""
        started = time.monotonic()
        async with self._pool.acquire() as conn:
            stops = await store.campaign_stops_since(conn, self.confirmed_seq)
        if stops.seq <= self.confirmed_seq:
            return
        dropped = 0
        if stops.stopped:
            self._sender.stop_campaigns(stops.stopped)
            ids = set(stops.stopped)
            dropped = await self._sender.drop_campaigns(ids)
            while self._sender.holds(ids):
                await asyncio.sleep(QUIET_CHECK_S)
            await self._recorder.flush()  # the results of their last sends are written
        async with self._pool.acquire() as conn:
            await store.ack_stops(conn, self._daemon_id, stops.seq)
        self.confirmed_seq = stops.seq
        if stops.stopped:
            log.info(
                "campaign_stops_confirmed",
                campaigns=sorted(stops.stopped),
                stop_seq=stops.seq,
                released=dropped,
                took_s=round(time.monotonic() - started, 3),
            )
