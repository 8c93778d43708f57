"""The claim-time budget check (issue 19, migration 0015): a campaign with a budget claims only
contacts whose message still fits, and is paused (reason `budget: ...`) before the message
that would pass it.

Committed cost = billed messages (statuses' pricing, priced by the campaign's rates) + messages
in flight (claimed, or sent and not billed yet) at the template category's price. Under a
per-campaign advisory lock (so two daemons never both spend the last euro), the claim runs as
usual, then its contacts are kept in the campaign's order while committed + their prices <=
budget; the rest are released in the same transaction. When nothing fits the campaign is
paused, once its messages in flight have left (a pause would drop the queued ones that fit).

The full count reads every sent contact and status of the campaign (~165 ms for 100,000
contacts, 37,000 sent): it runs when the running estimate (the last count plus the prices
kept since, in `campaign_budget_spend`) is older than FULL_COUNT_EVERY_S or the claim would
not fit under it, i.e. near the budget; far from it a claim costs two small statements.
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

FULL_COUNT_EVERY_S = 10.0
"""The running estimate is trusted this long: statuses may bill a message in another category
than its template's (Meta re-categorised it), which only a full count sees."""
Claim = Callable[[int | None], Awaitable[list[store.ClaimedContact] | None]]
"""The claim the check wraps, given at most how many to take (None: its own limit): the
contacts claimed (None: the claim itself held back)."""


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
        estimate = await cost_store.running_estimate(conn, campaign.id)
        claimed = await claim(await _most(conn, campaign.id, category, estimate, budget))
        if not claimed:
            return claimed
        # In the campaign's order (the claim's rows come back in any order): the budget is
        # spent on the first contacts, not on whichever happen to be cheap.
        claimed = sorted(claimed, key=_campaign_order)
        priced = await cost_store.prices(conn, campaign.id, [c.id for c in claimed], category)
        prices = [priced.get(c.id, (None, None)) for c in claimed]
        spent = await _committed_before(conn, campaign.id, category, estimate, prices, budget)
        total = spent
        kept: list[store.ClaimedContact] = []
        blocker: tuple[str | None, Decimal | None] = (None, None)
        for contact, (region, price) in zip(claimed, prices, strict=True):
            if price is None or total + price > budget:
                blocker = (region, price)
                break
            total += price
            kept.append(contact)
        await cost_store.note_kept(conn, campaign.id, total - spent)
        over = claimed[len(kept) :]
        if not over:
            return kept
        await store.release_contacts(conn, [c.id for c in over], daemon_id)
        if kept or await cost_store.in_flight(conn, campaign.id) > 0:
            return kept  # paused once these have left, so that they are not dropped
        reason = _reason(campaign, spent, budget, category, *blocker)
    if await store.pause_campaign_fatal(conn, campaign.id, reason):
        log.warning("campaign_budget_reached", campaign_id=campaign.id, reason=reason)
    return []


async def _most(
    conn: asyncpg.Connection,
    campaign_id: int,
    category: str,
    estimate: cost_store.Estimate | None,
    budget: Decimal,
) -> int | None:
    """At most how many contacts may fit (and one more, to see it does not): near the end of
    the budget the claim takes a few, not a batch to give back (None: no bound known)."""
    if estimate is None:
        return None
    low = await cost_store.cheapest(conn, campaign_id, category)
    if low is None or low <= 0:
        return None
    room = budget - estimate.committed
    return max(0, int(room / low)) + 1


async def _committed_before(
    conn: asyncpg.Connection,
    campaign_id: int,
    category: str,
    estimate: cost_store.Estimate | None,
    prices: list[tuple[str | None, Decimal | None]],
    budget: Decimal,
) -> Decimal:
    """What was committed before this claim. The running estimate when it is fresh and the
    whole claim fits under it with room to spare; else a full count (the claimed contacts,
    in flight now, taken out again), which becomes the new estimate."""
    wanted = sum((p for _, p in prices if p is not None), Decimal(0))
    if (
        estimate is not None
        and estimate.age_s < FULL_COUNT_EVERY_S
        and all(p is not None for _, p in prices)
        and estimate.committed + wanted <= budget
    ):
        return estimate.committed
    counted = await cost_store.committed(conn, campaign_id, category)
    before = counted.cost - wanted
    await cost_store.note_full_count(conn, campaign_id, before)
    return before


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
