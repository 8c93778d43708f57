"""What a campaign costs (issue 19): `campaign estimate` prices its contacts by a rate card,
by country and category, the remaining sends and the whole campaign; `campaign create|update
--rate-card FILE --budget AMOUNT` stores the card and the budget the daemon keeps to
(`engine.budget`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from daemon.core.model import Campaign
from daemon.core.ratecard import RateCard, RateCardError, normal_category, parse_rate_card
from daemon.db import cost_store
from daemon.db.campaigns import get_campaign
from daemon.engine.budget import campaign_category
from daemon.errors import UsageError


@dataclass(frozen=True)
class CountryCost:
    """One country's messages and their cost: still to send, and for the whole campaign."""

    country: str
    remaining: int
    remaining_cost: Decimal
    total: int
    total_cost: Decimal


@dataclass(frozen=True)
class Estimate:
    """A campaign priced by a rate card; countries without a rate are counted apart."""

    campaign_id: int
    category: str
    currency: str
    rate_card: str
    countries: list[CountryCost]
    unpriced: dict[str, tuple[int, int]] = field(default_factory=dict)  # country: (rem, total)

    @property
    def remaining(self) -> tuple[int, Decimal]:
        """Messages still to send and their cost."""
        return (
            sum(c.remaining for c in self.countries),
            sum((c.remaining_cost for c in self.countries), Decimal(0)),
        )

    @property
    def total(self) -> tuple[int, Decimal]:
        """Messages of the whole campaign (sent and still to send) and their cost."""
        return (
            sum(c.total for c in self.countries),
            sum((c.total_cost for c in self.countries), Decimal(0)),
        )


def read_rate_card(path: Path) -> RateCard:
    """The rate card in a CSV file (UsageError: one line with file:line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read rate card {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return parse_rate_card(text.splitlines(), str(path))
    except RateCardError as exc:
        raise UsageError(str(exc)) from None


async def estimate(
    conn: asyncpg.Connection,
    campaign_id: int,
    card: RateCard | None,
    category: str | None = None,
) -> Estimate:
    """Price the campaign's contacts that cost a message (not invalid, removed, canceled,
    failed or suppressed) by `card` (None: the campaign's stored card), in the template's
    category unless `category` is given."""
    campaign = await get_campaign(conn, campaign_id)
    if card is None:
        card = await cost_store.stored_rate_card(conn, campaign_id)
        if card is None:
            raise UsageError(f"campaign {campaign_id} has no rate card: give --rate-card FILE.csv")
    cat = normal_category(category) if category else campaign_category(campaign)
    counts = await cost_store.estimate_counts(
        conn, campaign_id, marketing=campaign.template_spec.marketing
    )
    countries: list[CountryCost] = []
    unpriced: dict[str, tuple[int, int]] = {}
    for row in counts:
        country = row.region or "?"
        price = card.price(row.region, cat)
        if price is None:
            unpriced[country] = (row.remaining, row.total)
            continue
        countries.append(
            CountryCost(country, row.remaining, row.remaining * price, row.total, row.total * price)
        )
    return Estimate(campaign_id, cat, card.currency, card.origin, countries, unpriced)


def estimate_dict(e: Estimate) -> dict[str, Any]:
    """The estimate for `--json`; amounts are decimal strings (exact)."""
    remaining, total = e.remaining, e.total
    return {
        "campaign_id": e.campaign_id,
        "category": e.category,
        "currency": e.currency,
        "rate_card": e.rate_card,
        "countries": [
            {
                "country": c.country,
                "category": e.category,
                "remaining": {"messages": c.remaining, "cost": f"{c.remaining_cost:f}"},
                "total": {"messages": c.total, "cost": f"{c.total_cost:f}"},
            }
            for c in e.countries
        ],
        "remaining": {"messages": remaining[0], "cost": f"{remaining[1]:f}"},
        "total": {"messages": total[0], "cost": f"{total[1]:f}"},
        "unpriced": [
            {"country": k, "remaining": v[0], "total": v[1]} for k, v in sorted(e.unpriced.items())
        ],
    }


def estimate_lines(e: Estimate) -> list[str]:
    """The estimate as `campaign estimate` prints it: a row per country, then the sums."""
    cur = e.currency
    lines = [
        f"campaign {e.campaign_id}: {e.category} messages priced by {e.rate_card} ({cur})",
        f"{'country':<8} {'category':<15} {'remaining':>10} {'cost':>14} {'total':>10}"
        f" {'cost':>14}",
    ]
    for c in sorted(e.countries, key=lambda c: (-c.total_cost, c.country)):
        lines.append(
            f"{c.country:<8} {e.category:<15} {c.remaining:>10} {c.remaining_cost:>14f}"
            f" {c.total:>10} {c.total_cost:>14f}"
        )
    (rn, rc), (tn, tc) = e.remaining, e.total
    lines.append(f"{'all':<8} {e.category:<15} {rn:>10} {rc:>14f} {tn:>10} {tc:>14f}")
    lines.append(
        f"remaining: {rn} messages, {rc:f} {cur}; whole campaign: {tn} messages, {tc:f} {cur}"
    )
    for country, (rem, tot) in sorted(e.unpriced.items()):
        lines.append(
            f"not priced: {country}: {rem} remaining, {tot} in all (no {e.category} rate"
            " on the card)"
        )
    return lines


async def set_cost(
    conn: asyncpg.Connection,
    campaign_id: int,
    *,
    card: RateCard | None,
    card_name: str | None,
    budget: object,
    currency: str | None,
    keep: object,
) -> Campaign:
    """Store a rate card and/or a budget (`budget` None: remove it; `keep`: leave it). A budget
    needs a rate card (given now or before) in the budget's currency."""
    async with conn.transaction():
        campaign = await get_campaign(conn, campaign_id, lock=True)
        if card is not None:
            await cost_store.store_rates(conn, campaign_id, card, card_name or card.origin)
        stored = card or await cost_store.stored_rate_card(conn, campaign_id)
        if budget is keep:
            if card is not None and campaign.budget is not None:
                _check_currency(campaign.budget_currency, card)
            return await get_campaign(conn, campaign_id)
        if budget is None:
            await cost_store.set_budget(conn, campaign_id, None, None)
            return await get_campaign(conn, campaign_id)
        assert isinstance(budget, Decimal)
        if stored is None:
            raise UsageError(
                "--budget needs the campaign's rates: give --rate-card FILE.csv as well"
            )
        _check_currency(currency, stored)
        await cost_store.set_budget(conn, campaign_id, budget, stored.currency)
        return await get_campaign(conn, campaign_id)


def _check_currency(currency: str | None, card: RateCard) -> None:
    if currency is not None and currency.upper() != card.currency:
        raise UsageError(
            f"--budget-currency {currency.upper()} differs from the rate card's {card.currency}"
            " (convert the card, or the budget)"
        )


def parse_budget(text: str) -> Decimal | None:
    """`--budget AMOUNT` (`none`: no budget); UsageError for anything but an amount >= 0."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        amount = Decimal(text.strip())
    except ArithmeticError:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise UsageError(f"--budget must be an amount of at least 0 (e.g. 250.00), got {text!r}")
    return amount


async def committed_cost(conn: asyncpg.Connection, campaign: Campaign) -> Decimal:
    """What the campaign has committed: billed messages plus messages in flight, priced by
    its stored rates (what the daemon's budget check counts)."""
    counted = await cost_store.committed(conn, campaign.id, campaign_category(campaign))
    return counted.cost
