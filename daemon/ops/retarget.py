"""`campaign retarget` (a new draft campaign of the contacts of another in chosen states, with
their stored parameters) and `campaign delete` (a draft campaign removed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from daemon.core.states import CampaignState, ContactState
from daemon.db.campaigns import get_campaign
from daemon.db.sql import query
from daemon.errors import TransitionError


@dataclass(frozen=True)
class Retargeted:
    """The new campaign, the contacts copied into it, the suppressed phones left out, the US
    numbers kept as invalid records (marketing_blocked_country)."""

    campaign_id: int
    source_id: int
    copied: int
    suppressed: int
    blocked: int = 0


async def retarget(
    conn: asyncpg.Connection,
    campaign_id: int,
    states: Sequence[ContactState],
    name: str | None = None,
    *,
    block_us_marketing: bool = True,
) -> Retargeted:
    """A new draft campaign with the same template, binding and sending number, holding the
    contacts of `campaign_id` in `states` as initial (suppressed phones left out, counted;
    `block_us_marketing`: a MARKETING campaign's US numbers are invalid records)."""
    async with conn.transaction():
        source = await get_campaign(conn, campaign_id, lock=True)
        new_id = await conn.fetchval(
            query("retarget_campaign"), campaign_id, name or f"{source.name} (retarget)"
        )
        await conn.execute(query("retarget_header_file"), campaign_id, new_id)
        block = block_us_marketing and source.template_spec.marketing
        r = await conn.fetchrow(
            query("retarget_contacts"), campaign_id, new_id, [s.value for s in states], block
        )
    return Retargeted(new_id, campaign_id, r["copied"], r["suppressed"], r["blocked"])


async def delete_campaign(conn: asyncpg.Connection, campaign_id: int) -> None:
    """Remove a draft campaign and its contacts; TransitionError for any other state."""
    async with conn.transaction():
        campaign = await get_campaign(conn, campaign_id, lock=True)
        if campaign.state is not CampaignState.DRAFT:
            raise TransitionError(
                f"campaign {campaign_id} is {campaign.state.value}: only a draft campaign can be"
                " deleted (cancel it, or let it finish; `gdpr purge` anonymises old ones)"
            )
        await conn.execute(query("delete_draft_campaign"), campaign_id)
