"""The claim-time budget check (issue 19, migration 0015): a campaign with a budget claims only
contacts whose message still fits, and is paused (reason `budget: ...`) before the message
that would pass it.

Committed cost = billed messages (statuses' pricing, priced by the campaign's rates) + messages
in flight (claimed, or sent and not billed yet) at the template category's price. Under a
per-campaign advisory lock (so two daemons never both spend the last euro), the claim runs as
usual, then its contacts are kept in claim order while committed + their prices <= budget; the
rest are released in the same transaction. When nothing fits the campaign is paused, once its
messages in flight have left (a pause would drop the queued ones that fit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

import asyncpg

from daemon.core.model import Campaign
from daemon.core.ratecard import normal_category
from daemon.db import cost_store
from daemon.db import sender_store as store
from daemon.logs import get_logger

log = get_logger(__name__)

Claim = Callable[[], Awaitable[list[store.ClaimedContact] | None]]
"""The claim the check wraps: the contacts claimed (None: the claim itself held back)."""


def campaign_category(campaign: Campaign) -> str:
    """The pricing category of the campaign's messages (unknown: marketing, the dearest)."""
    return normal_category(campaign.template_spec.definition.category)


async def claim_within_budget(
    conn: asyncpg.Connection, campaign: Campaign, daemon_id: str, claim: Claim
) -> list[store.ClaimedContact] | None:
    """Run `claim` for a campaign with a budget; the contacts that fit (the rest released),
    and the campaign paused when none does and none is in flight."""
    assert campaign.budget is not None
    budget = Decimal(campaign.budget)
    category = campaign_category(campaign)
    async with conn.transaction():
        await cost_store.lock_budget(conn, campaign.id)
        spent = await cost_store.committed(conn, campaign.id, category)
        claimed = await claim()
        if not claimed:
            return claimed
        # In the campaign's order (the claim's rows come back in any order): the budget is
        # spent on the first contacts, not on whichever happen to be cheap.
        claimed = sorted(claimed, key=_campaign_order)
        priced = await cost_store.prices(conn, campaign.id, [c.id for c in claimed], category)
        total = spent.cost
        kept: list[store.ClaimedContact] = []
        blocker: tuple[str | None, Decimal | None] = (None, None)
        for contact in claimed:
            region, price = priced.get(contact.id, (None, None))
            if price is None or total + price > budget:
                blocker = (region, price)
                break
            total += price
            kept.append(contact)
        over = claimed[len(kept) :]
        if not over:
            return kept
        await store.release_contacts(conn, [c.id for c in over], daemon_id)
        if kept or await cost_store.in_flight(conn, campaign.id) > 0:
            return kept  # paused once these have left, so that they are not dropped
        reason = _reason(campaign, spent.cost, budget, category, *blocker)
    if await store.pause_campaign_fatal(conn, campaign.id, reason):
        log.warning("campaign_budget_reached", campaign_id=campaign.id, reason=reason)
    return []


def _campaign_order(contact: store.ClaimedContact) -> tuple[float, int]:
    # not_before is -infinity (a naive datetime.min) without a window, else an aware time.
    opened = contact.not_before
    return (float("-inf") if opened.tzinfo is None else opened.timestamp(), contact.id)


def _reason(
    campaign: Campaign,
    committed: Decimal,
    budget: Decimal,
    category: str,
    region: str | None,
    price: Decimal | None,
) -> str:
    currency = campaign.budget_currency or ""
    if price is None:
        return (
            f"budget: no {category} rate for country {region or '?'} on the campaign's rate"
            " card (campaign update ID --rate-card FILE)"
        )
    return (
        f"budget: committed {committed:f} {currency} + next message {price:f} {currency}"
        f" ({region or '?'}, {category}) would pass the budget {budget:f} {currency}"
    )
