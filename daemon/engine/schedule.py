"""Scheduled starts (`campaign start ID --at TIME`): a scheduled campaign becomes running at
its start time, started by whichever daemon gets there first.

No polling of the table every second: one timer for the nearest start time, set again
whenever a campaign changes (NOTIFY on the campaigns channel: scheduled, moved, paused,
canceled). The start itself is one UPDATE that also NOTIFYs every daemon, as `campaign start`
does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg

from daemon.db.sql import query
from daemon.engine.timer import WakeableTimer
from daemon.logs import get_logger

log = get_logger(__name__)

MAX_SLEEP_S = 3600.0
"""Without a NOTIFY (a lost connection), the table is read again at least this often."""


class Scheduler:
    """Starts scheduled campaigns on time (`run`); `wake` on every campaign NOTIFY."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        wall_clock: Callable[[], datetime],
        on_started: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._clock = wall_clock
        self._on_started = on_started
        self._timer = WakeableTimer(self.start_due, "scheduled_start_failed")

    def wake(self) -> None:
        """A campaign changed: the nearest start time may have moved."""
        self._timer.wake()

    async def run(self) -> None:
        """Until cancelled: start what is due, then sleep until the nearest start time."""
        await self._timer.run()

    async def start_due(self) -> float:
        """Start the campaigns whose time has come; seconds until the next start time."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            started = [r["id"] for r in await conn.fetch(query("start_due_campaigns"), now)]
            nearest: datetime | None = await conn.fetchval(query("next_scheduled_start"))
        for campaign_id in started:
            log.info("scheduled_campaign_started", campaign_id=campaign_id)
        if started:
            self._on_started()
        if nearest is None:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.01, (nearest - self._clock()).total_seconds()))
