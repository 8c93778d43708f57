"""Cost in the database (migration 0015): the contacts an estimate prices, a campaign's stored
rate card and budget, and what a campaign with a budget has committed (the claim's check)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from daemon.core.ratecard import Rate, RateCard
from daemon.db.sql import query


@dataclass(frozen=True)
class RegionCount:
    """Contacts of one region that cost a message: still to send, and in all."""

    region: str | None
    remaining: int
    total: int


@dataclass(frozen=True)
class Estimate:
    """The budget check's running estimate: committed at the last full count plus the claims
    kept since, and how old that count is."""

    committed: Decimal
    age_s: float


@dataclass(frozen=True)
class Committed:
    """What a budget campaign has committed: billed messages plus messages in flight."""

    cost: Decimal
    messages: int
    unpriced: int


async def estimate_counts(
    conn: asyncpg.Connection, campaign_id: int, *, marketing: bool
) -> list[RegionCount]:
    """The campaign's contacts that cost a message, by region (sql/queries/cost.sql)."""
    rows = await conn.fetch(query("cost_estimate_counts"), campaign_id, marketing)
    return [RegionCount(r["region"], r["remaining"], r["total"]) for r in rows]


async def store_rates(
    conn: asyncpg.Connection, campaign_id: int, card: RateCard, file_name: str
) -> int:
    """Replace the campaign's rates by `card`; how many rates were stored."""
    rates = list(card.rates.values())
    async with conn.transaction():
        await conn.execute(query("cost_rates_clear"), campaign_id)
        await conn.execute(
            query("cost_rates_load"),
            campaign_id,
            [r.region for r in rates],
            [r.category for r in rates],
            [r.price for r in rates],
            card.currency,
            [r.line for r in rates],
        )
        await conn.execute(query("cost_set_rate_card"), campaign_id, file_name)
        await conn.execute(query("budget_forget"), campaign_id)
    return len(rates)


async def stored_rate_card(conn: asyncpg.Connection, campaign_id: int) -> RateCard | None:
    """The campaign's stored rate card (None: none loaded)."""
    rows = await conn.fetch(query("cost_rates"), campaign_id)
    if not rows:
        return None
    rates = {
        (r["region"], r["category"]): Rate(r["region"], r["category"], r["price"], r["source_line"])
        for r in rows
    }
    origin = await conn.fetchval(query("cost_rate_card_name"), campaign_id)
    return RateCard(rows[0]["currency"], rates, origin or "<stored rate card>")


async def set_budget(
    conn: asyncpg.Connection, campaign_id: int, budget: Decimal | None, currency: str | None
) -> None:
    """The campaign's budget and its currency (None: no budget)."""
    await conn.execute(query("cost_set_budget"), campaign_id, budget, currency, None)


async def lock_budget(conn: asyncpg.Connection, campaign_id: int) -> None:
    """Take the campaign's budget lock until the transaction ends (one checker at a time)."""
    await conn.execute(query("budget_lock"), campaign_id)


async def committed(conn: asyncpg.Connection, campaign_id: int, category: str) -> Committed:
    """Billed messages plus messages in flight, priced by the campaign's rates."""
    r = await conn.fetchrow(query("budget_committed"), campaign_id, category)
    return Committed(Decimal(r["committed"]), int(r["messages"]), int(r["unpriced"]))


async def prices(
    conn: asyncpg.Connection, campaign_id: int, ids: Sequence[int], category: str
) -> dict[int, tuple[str | None, Decimal | None]]:
    """The region and price of one message to each contact (price None: not on the card)."""
    rows = await conn.fetch(query("budget_prices"), campaign_id, list(ids), category)
    return {r["id"]: (r["region"], r["price"]) for r in rows}


async def in_flight(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Contacts of the campaign claimed by any daemon."""
    n: int = await conn.fetchval(query("budget_others_in_flight"), campaign_id)
    return n


async def running_estimate(conn: asyncpg.Connection, campaign_id: int) -> Estimate | None:
    """The campaign's running committed estimate (None: never fully counted)."""
    r = await conn.fetchrow(query("budget_estimate"), campaign_id)
    if r is None:
        return None
    return Estimate(Decimal(r["estimate"]), float(r["age_s"]))


async def note_full_count(conn: asyncpg.Connection, campaign_id: int, cost: Decimal) -> None:
    """A full count found `cost` committed (before the claim being checked)."""
    await conn.execute(query("budget_checked"), campaign_id, cost)


async def note_kept(conn: asyncpg.Connection, campaign_id: int, cost: Decimal) -> None:
    """A claim kept contacts costing `cost`."""
    await conn.execute(query("budget_claimed"), campaign_id, cost)


async def cheapest(conn: asyncpg.Connection, campaign_id: int, category: str) -> Decimal | None:
    """The cheapest price of `category` on the campaign's card (None: no such rate)."""
    price: Decimal | None = await conn.fetchval(query("budget_cheapest"), campaign_id, category)
    return price
