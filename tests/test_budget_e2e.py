"""A campaign's budget end to end (issue 19): the real daemon, its webhook taking the mock's
signed statuses with their pricing, real PostgreSQL. The daemon pauses the campaign (reason
`budget`) before the message that would pass the budget: the mock receives exactly the
messages that fit, counted by the test from its own prices."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import asyncpg

from daemon.config import Secret
from daemon.core.payload import Template
from daemon.core.ratecard import parse_rate_card
from daemon.core.states import CampaignCommand
from daemon.core.template_spec import TemplateSource, bind_template
from daemon.db.campaigns import change_campaign_state, create_campaign, get_campaign
from daemon.db.importer import import_contacts
from daemon.engine.service import default_components
from daemon.mockapi.config import MockConfig, ReceiptConfig
from daemon.mockapi.server import start_mock_server
from daemon.ops.cost import set_cost
from daemon.ops.reports import run_report
from tests.helpers.daemon import daemon_config, running_daemon
from tests.helpers.data import write_csv
from tests.test_cli import wa
from tests.test_receipts_e2e import SECRET, free_port, wait_receipts_settled
from tests.test_template_import import definition

PRICES = {"CZ": Decimal("0.0602"), "DE": Decimal("0.1131"), "GB": Decimal("0.0529")}
NUMBERS = {"CZ": "+42060212{:04d}", "DE": "+4917012{:05d}", "GB": "+447911{:06d}"}
KEEP = object()


def phones(n: int) -> list[tuple[str, str]]:
    """n contacts, the countries interleaved unevenly: (phone, region) in import order."""
    order = ["CZ", "DE", "GB", "GB", "CZ", "DE", "DE"]
    return [(NUMBERS[order[i % 7]].format(i), order[i % 7]) for i in range(n)]


async def wait_for(check: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_budget_pauses_before_the_message_that_would_pass_it(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    contacts = phones(120)
    spec = bind_template(definition("loadtest_offer"), source=TemplateSource.FILE)
    cid = await create_campaign(
        conn, "budget", Template("loadtest_offer", "en_US"), "1000001", spec=spec
    )
    rows = [(p, f"Name{i}") for i, (p, _) in enumerate(contacts)]
    result = await import_contacts(
        conn, cid, write_csv(tmp_path / "c.csv", rows, header=("phone", "body.1"))
    )
    assert result.imported == 120
    card = parse_rate_card(
        ["country,category,price,currency"] + [f"{c},marketing,{p},EUR" for c, p in PRICES.items()],
        "rates.csv",
    )
    # The test's own arithmetic: the first 37 messages in import order fit, the 38th would
    # pass the budget by less than its price.
    cost = [PRICES[region] for _, region in contacts]
    fits = 37
    budget = sum(cost[:fits], Decimal(0)) + cost[fits] - Decimal("0.0001")
    await set_cost(
        conn, cid, card=card, card_name="rates.csv", budget=budget, currency="EUR", keep=KEEP
    )
    port = free_port()
    receipts = ReceiptConfig(
        enabled=True,
        webhook_url=f"http://127.0.0.1:{port}/webhook",
        app_secret=SECRET,
        delivered_rate=1.0,
        read_rate=0.3,
        failed_rate=0.0,
    )
    async with start_mock_server(MockConfig(seed=5, receipts=receipts)) as mock:
        config = daemon_config(
            mock.base_url,
            whatsapp={"app_secret": Secret(SECRET)},
            webhook={"enabled": True, "host": "127.0.0.1", "port": port},
            sender={"idle_poll_s": 0.2},
        )
        async with running_daemon(config, db_dsn, components=default_components(config)):
            await change_campaign_state(conn, cid, CampaignCommand.START)

            async def paused() -> bool:
                return (await get_campaign(conn, cid)).state.value == "paused"

            await wait_for(paused)
            await asyncio.sleep(0.5)  # nothing more leaves once paused
            assert len(mock.state.accepted) == fits
            campaign = await get_campaign(conn, cid)
            assert campaign.pause_reason is not None
            assert campaign.pause_reason.startswith("budget: "), campaign.pause_reason
            assert f"would pass the budget {budget:f} EUR" in campaign.pause_reason
            sent = [m.wa_id for m in mock.state.accepted]
            assert sorted(sent) == sorted(p.lstrip("+") for p, _ in contacts[:fits])
            async with asyncio.timeout(30):
                await mock.receipts.drain()
            await wait_receipts_settled(conn)
            billed = await conn.fetchval(
                "SELECT count(DISTINCT r.wamid) FROM status_receipts r JOIN contacts c"
                " ON c.id = r.contact_id WHERE c.campaign_id = $1 AND r.pricing_billable",
                cid,
            )
            assert billed == fits

            # More budget: 10 more messages' worth, then paused again, before the 11th.
            raised = sum(cost[: fits + 10], Decimal(0)) + cost[fits + 10] - Decimal("0.0001")
            await set_cost(
                conn, cid, card=None, card_name=None, budget=raised, currency=None, keep=KEEP
            )
            await change_campaign_state(conn, cid, CampaignCommand.RESUME)

            async def sent_more() -> bool:
                return len(mock.state.accepted) >= fits + 10 and await paused()

            await wait_for(sent_more)
            await asyncio.sleep(0.5)
            assert len(mock.state.accepted) == fits + 10
            sent = [m.wa_id for m in mock.state.accepted]
            assert sorted(sent) == sorted(p.lstrip("+") for p, _ in contacts[: fits + 10])
            async with asyncio.timeout(30):
                await mock.receipts.drain()
            await wait_receipts_settled(conn)
        # The report prices what the statuses billed by the stored card: what was spent.
        report = await run_report(conn, "cost_by_country", cid)
        rows = [dict(zip(report.columns, r, strict=True)) for r in report.rows]
        assert sum(r["messages"] for r in rows) == fits + 10
        assert sum(r["cost"] for r in rows) == sum(cost[: fits + 10], Decimal(0)) <= raised
        by_country = {r["country"]: r["messages"] for r in rows}
        assert by_country == {
            c: sum(1 for _, region in contacts[: fits + 10] if region == c) for c in PRICES
        }
        assert {r["category"] for r in rows} == {"marketing"}
        assert {r["currency"] for r in rows} == {"EUR"}
    status = wa(db_dsn, "campaign", "status", str(cid))
    spent = sum(cost[: fits + 10], Decimal(0))
    assert f"Committed: {spent:f} of {raised:f} EUR (billed + in flight)" in status.stdout
    assert "budget: committed" in wa(db_dsn, "campaign", "list").stdout
    left = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND state = 'initial'", cid
    )
    assert left == 120 - fits - 10
