"""The daemon's side of send windows: keeps each pending contact's open interval current.

`campaign create|update --window` writes every pending contact's interval (per time zone,
`db.windows_store`); the claim takes a contact only while `not_before <= now < open_until`.
When a zone's window closes, its contacts need their next interval: this task writes it, for
the running campaigns with a window, at each closing time of the zones it has seen (and when
a campaign starts, resumes or changes: NOTIFY), so that the claim's index holds only contacts
whose window is open, or will open at `not_before`. One statement pair per campaign and
closing, whatever the number of contacts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from daemon.config import Config
from daemon.core.model import Campaign, CampaignId
from daemon.core.windows import SendWindow, intervals_by_zone, parse_window
from daemon.db import sender_store
from daemon.db.windows_store import refresh_windows
from daemon.engine.timer import WakeableTimer
from daemon.logs import get_logger

log = get_logger(__name__)

MAX_SLEEP_S = 300.0
"""Looked at again at least this often, whatever the closing times."""


@dataclass
class _Seen:
    key: tuple[str, str]  # (window text, fallback zone) the zones were computed for
    window: SendWindow
    zones: set[str] = field(default_factory=set)


class WindowKeeper:
    """Recomputes the intervals of contacts whose window closed (`run`); `wake` on NOTIFY."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Config,
        wall_clock: Callable[[], datetime],
        on_refreshed: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._fallback = config.planning.time_zone
        self._clock = wall_clock
        self._on_refreshed = on_refreshed
        self._timer = WakeableTimer(self.refresh, "window_refresh_failed")
        self._seen: dict[CampaignId, _Seen] = {}

    def wake(self) -> None:
        """A campaign started, resumed or changed: look again now."""
        self._timer.wake()

    async def run(self) -> None:
        """Until cancelled: refresh, then sleep until the next closing time or a wake-up."""
        await self._timer.run()

    async def refresh(self) -> float:
        """One pass over the running campaigns with a window; seconds until the next closing."""
        now = self._clock()
        nearest = MAX_SLEEP_S
        written = 0
        async with self._pool.acquire() as conn:
            campaigns, _ = await sender_store.running_campaigns(conn)
            windowed = [c for c in campaigns if c.send_window]
            for gone in set(self._seen) - {c.id for c in windowed}:
                del self._seen[gone]
            for campaign in windowed:
                seen, count = await self._refresh_campaign(conn, campaign, now)
                written += count
                for opens, closes in intervals_by_zone(
                    seen.window, sorted(seen.zones), self._fallback_of(campaign), now
                ).values():
                    for moment in (opens, closes):
                        if moment > now:
                            nearest = min(nearest, (moment - now).total_seconds())
        if written:
            self._on_refreshed()
        return max(0.05, nearest)

    def _fallback_of(self, campaign: Campaign) -> str:
        return campaign.window_zone or self._fallback

    async def _refresh_campaign(
        self, conn: asyncpg.Connection, campaign: Campaign, now: datetime
    ) -> tuple[_Seen, int]:
        assert campaign.send_window is not None
        fallback = self._fallback_of(campaign)
        key = (campaign.send_window, fallback)
        seen = self._seen.get(campaign.id)
        first = seen is None or seen.key != key
        if seen is None or first:
            seen = _Seen(key, parse_window(campaign.send_window))
            self._seen[campaign.id] = seen
        intervals = await refresh_windows(
            conn, campaign.id, seen.window, fallback, now, everything=first
        )
        seen.zones |= set(intervals)
        if intervals and not first:
            log.info("send_windows_moved", campaign_id=campaign.id, zones=len(intervals))
        return seen, len(intervals)
