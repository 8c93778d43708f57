"""The claim-time budget check on its own (engine.budget), with real claims: two daemons
claiming at once never pass the budget together, the contacts kept are the campaign's first,
and far from the budget a claim skips the full count of what was committed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from daemon.core.ratecard import parse_rate_card
from daemon.db import cost_store
from daemon.db import sender_store as store
from daemon.db.campaigns import get_campaign
from daemon.db.importer import import_contacts
from daemon.db.pool import connect
from daemon.engine import budget as budget_module
from daemon.engine.budget import claim_within_budget
from daemon.engine.collectors import pause_reason_class
from daemon.ops.cost import set_cost
from tests.helpers.data import write_csv
from tests.test_budget_e2e import PRICES, phones
from tests.test_cost import marketing_campaign

KEEP = object()


async def budget_campaign(
    conn: asyncpg.Connection, tmp_path: Path, n: int, budget: Decimal
) -> tuple[int, list[Decimal]]:
    cid = await marketing_campaign(conn)
    contacts = phones(n)
    rows = [(p, f"N{i}") for i, (p, _) in enumerate(contacts)]
    result = await import_contacts(
        conn,
        cid,
        write_csv(tmp_path / "c.csv", rows, header=("phone", "body.1")),
        block_us_marketing=False,
    )
    assert result.imported == n
    card = parse_rate_card(
        ["country,category,price,currency"] + [f"{c},marketing,{p},EUR" for c, p in PRICES.items()],
        "rates.csv",
    )
    await set_cost(conn, cid, card=card, card_name="r", budget=budget, currency=None, keep=KEEP)
    await conn.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
    return cid, [PRICES[region] for _, region in contacts]


async def claim_rounds(conn: asyncpg.Connection, cid: int, daemon: str, batch: int) -> int:
    """Claim in batches until the budget stops it; how many contacts this daemon kept."""
    kept = 0
    while True:
        campaign = await get_campaign(conn, cid)
        if campaign.state.value != "running":
            return kept

        async def claim(most: int | None) -> list[store.ClaimedContact]:
            count = batch if most is None else min(batch, most)
            return await store.claim_contacts(conn, cid, daemon, 60.0, count)

        got = await claim_within_budget(conn, campaign, daemon, claim)
        assert got is not None
        if not got:
            # Nothing fits: sends in flight leave (the test's "send": they become sent).
            await conn.execute(
                "UPDATE contacts SET state = 'sent', wamid = 'w' || id"
                " WHERE campaign_id = $1 AND state = 'in_progress'",
                cid,
            )
            await asyncio.sleep(0)
        kept += len(got)
        await asyncio.sleep(0)


@pytest.mark.parametrize("batch", [7, 50])
async def test_two_daemons_together_stop_at_the_budget(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path, batch: int
) -> None:
    fits = 333
    cid, cost = await budget_campaign(conn, tmp_path, 600, Decimal(0))
    budget = sum(cost[:fits], Decimal(0)) + cost[fits] - Decimal("0.0001")
    await cost_store.set_budget(conn, cid, budget, "EUR")
    other = await connect(db_dsn)
    try:
        a, b = await asyncio.gather(
            claim_rounds(conn, cid, "daemon-a", batch), claim_rounds(other, cid, "daemon-b", batch)
        )
    finally:
        await other.close()
    assert a > 0 and b > 0
    assert a + b == fits
    taken = await conn.fetch(
        "SELECT id FROM contacts WHERE campaign_id = $1 AND state <> 'initial' ORDER BY id", cid
    )
    first = await conn.fetch(
        "SELECT id FROM contacts WHERE campaign_id = $1 ORDER BY id LIMIT $2", cid, fits
    )
    assert taken == first  # the campaign's first contacts, none skipped for a cheaper one
    campaign = await get_campaign(conn, cid)
    assert campaign.state.value == "paused"
    assert campaign.pause_reason is not None and campaign.pause_reason.startswith("budget: ")
    committed = await cost_store.committed(conn, cid, "marketing")
    assert committed.cost == sum(cost[:fits], Decimal(0)) <= budget
    assert pause_reason_class(campaign.pause_reason) == "budget"  # the metrics' label


async def test_far_from_the_budget_claims_skip_the_full_count(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, cost = await budget_campaign(conn, tmp_path, 400, Decimal("1000"))
    counts = 0
    real = cost_store.committed

    async def counting(*args: object) -> cost_store.Committed:
        nonlocal counts
        counts += 1
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(budget_module.cost_store, "committed", counting)
    kept = 0
    for _ in range(8):
        campaign = await get_campaign(conn, cid)

        async def claim(most: int | None) -> list[store.ClaimedContact]:
            return await store.claim_contacts(conn, cid, "d", 60.0, min(50, most or 50))

        got = await claim_within_budget(conn, campaign, "d", claim)
        kept += len(got or [])
    assert kept == 400
    assert counts == 1  # the first claim counted; the rest fitted under the estimate
    estimate = await cost_store.running_estimate(conn, cid)
    assert estimate is not None and estimate.committed == sum(cost, Decimal(0))
    assert (await real(conn, cid, "marketing")).cost == estimate.committed
    # A rate card change forgets the estimate: the next claim counts in full again.
    card = await cost_store.stored_rate_card(conn, cid)
    assert card is not None
    await cost_store.store_rates(conn, cid, card, "again.csv")
    assert await cost_store.running_estimate(conn, cid) is None
