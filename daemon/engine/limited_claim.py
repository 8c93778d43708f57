"""The claim under the portfolio's messaging limit (`limits.daily_unique_recipients`) and the
frequency caps: which of the three claim statements runs, and holding a campaign whose limit
is reached (with when the next slot frees). The limit's rolling window is filled from the
stored history at the first limited claim and then every `LIMIT_BACKFILL_EVERY_S`, so that
recipients sent before the limit was configured count too."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from daemon.config import Config
from daemon.core.model import Campaign
from daemon.db import sender_store as store
from daemon.logs import get_logger

log = get_logger(__name__)

LIMIT_BACKFILL_EVERY_S = 300.0
"""How often the limit's window is filled again from the stored history."""

CappedClaim = Callable[[asyncpg.Connection, int], Awaitable[list[store.ClaimedContact]]]
"""A claim through the frequency caps (db.caps_store): connection, how many."""


class LimitedClaim:
    """One daemon's limited claims; remembers when it last filled the window from history."""

    def __init__(self, config: Config, daemon_id: str) -> None:
        self._config = config
        self._daemon_id = daemon_id
        self._backfilled_at: float | None = None  # monotonic

    async def claim(
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
