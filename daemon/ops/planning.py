"""Campaign planning as operators set it (issue 19): a scheduled start, a send window in the
recipients' local time with its fallback zone, a finish-by time.

`update_planning` stores what changed and writes every pending contact's open interval in the
same transaction (per time zone: `db.windows_store`), then NOTIFYs the daemons, which keep the
intervals current as windows close (`engine.windows`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from daemon.core.model import Campaign
from daemon.core.states import CampaignState
from daemon.core.windows import parse_window
from daemon.db import campaigns as store
from daemon.db import windows_store
from daemon.db.sql import query
from daemon.errors import TransitionError, UsageError

KEEP: Final = object()
"""A planning value left as it is."""
PLANNABLE_STATES: Final = frozenset(
    {CampaignState.DRAFT, CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.PAUSED}
)


@dataclass(frozen=True)
class PlanningChange:
    """What `campaign create|update` sets: each field a new value, None to remove it, or
    KEEP. `window` is the text as written (checked here), `window_zone` an IANA zone."""

    window: object = KEEP
    window_zone: object = KEEP
    finish_by: object = KEEP

    @property
    def empty(self) -> bool:
        """Nothing to change."""
        return all(v is KEEP for v in (self.window, self.window_zone, self.finish_by))


async def update_planning(
    conn: asyncpg.Connection,
    campaign_id: int,
    change: PlanningChange,
    *,
    default_zone: str,
    now: datetime,
) -> Campaign:
    """Apply `change` to a campaign that has not ended; recompute its contacts' windows."""
    async with conn.transaction():
        campaign = await store.get_campaign(conn, campaign_id, lock=True)
        if campaign.state not in PLANNABLE_STATES:
            raise TransitionError(
                f"campaign {campaign_id} is {campaign.state.value}: nothing left to plan"
            )
        window = campaign.send_window if change.window is KEEP else change.window
        if isinstance(window, str):
            window = parse_window(window).text
        zone = campaign.window_zone if change.window_zone is KEEP else change.window_zone
        finish_by = campaign.finish_by if change.finish_by is KEEP else change.finish_by
        if isinstance(finish_by, datetime) and change.finish_by is not KEEP and finish_by <= now:
            raise UsageError(f"--finish-by {finish_by:%Y-%m-%d %H:%M:%S} UTC is in the past")
        assert window is None or isinstance(window, str)
        assert zone is None or isinstance(zone, str)
        assert finish_by is None or isinstance(finish_by, datetime)
        updated = await windows_store.set_planning(conn, campaign_id, window, zone, finish_by)
        if window is None:
            await windows_store.clear_windows(conn, campaign_id)
        else:
            await windows_store.refresh_windows(
                conn, campaign_id, parse_window(window), zone or default_zone, now, everything=True
            )
        await conn.execute(query("notify_campaigns_changed"), f"{campaign_id}:planned")
    return updated


async def windows_after_import(
    conn: asyncpg.Connection, campaign_id: int, *, default_zone: str, now: datetime
) -> None:
    """Contacts just imported into a campaign with a send window get their open interval now,
    so `campaign status` counts them right and a started campaign claims them at once (the
    daemon would otherwise compute it at start or resume)."""
    campaign = await store.get_campaign(conn, campaign_id)
    if campaign.send_window is None:
        return
    await windows_store.refresh_windows(
        conn,
        campaign_id,
        parse_window(campaign.send_window),
        campaign.window_zone or default_zone,
        now,
    )


def check_start_at(start_at: datetime, now: datetime) -> None:
    """A scheduled start must lie ahead (UsageError otherwise)."""
    if start_at <= now:
        raise UsageError(
            f"--at {start_at:%Y-%m-%d %H:%M:%S} UTC is in the past: `campaign start ID`"
            " starts it now"
        )


async def window_status(
    conn: asyncpg.Connection, campaign: Campaign, now: datetime
) -> windows_store.Waiting | None:
    """How many pending contacts wait for their window, and when the next opens (None: the
    campaign has no window)."""
    if campaign.send_window is None:
        return None
    return await windows_store.window_waiting(conn, campaign.id, now)
