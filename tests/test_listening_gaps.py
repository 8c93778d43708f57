"""Listening end to end, the rest of issue 17 (signed webhooks through the real daemon, the
mock recording every send, real PostgreSQL): a failed 131026 status retried once, marketing
stop and resume through the mock's user_preferences, template quality and category shown in
`campaign status`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from daemon.core.payload import decode_callback_data
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.mockapi.config import ReceiptConfig
from daemon.mockapi.receipts import PlannedStatus
from daemon.mockapi.state import AcceptedMessage
from tests.helpers.data import campaign_with_contacts, phone
from tests.test_cli import wa
from tests.test_listening_e2e import NUMBER, Harness, envelope, harness, until, wait_final


def undeliverable(contacts: int, *, every_attempt: bool) -> Any:
    """A plan that fails the first `contacts` contacts' first (or every) attempt with 131026."""

    def plan(original: Any, message: AcceptedMessage, now: float) -> list[PlannedStatus]:
        statuses: list[PlannedStatus] = original(message, now)
        decoded = decode_callback_data(message.biz_opaque_callback_data or "")
        ours = decoded is not None and int(message.to.lstrip("+")[-7:]) < contacts
        if not ours or (decoded is not None and decoded.attempt > 1 and not every_attempt):
            return [s._replace(error_code=None, status="sent") for s in statuses[:1]]
        return [statuses[0]._replace(status="failed", error_code=131026, with_pricing=False)]

    return plan


async def settle(h: Harness, conn: asyncpg.Connection, campaign: int, resent: int) -> None:
    """Until `resent` contacts were sent a second time, every status arrived and the campaign
    has nothing left to send."""

    async def second_sends() -> bool:
        return sum(1 for i in range(resent) if h.sent_to(phone(i)) >= 2) == resent

    await until(second_sends)
    await asyncio.wait_for(h.mock.receipts.drain(), 30)
    await wait_final(conn, campaign)
    await asyncio.sleep(0.5)  # a third message would have gone by now
    await asyncio.wait_for(h.mock.receipts.drain(), 30)
    await wait_final(conn, campaign)


async def test_a_failed_131026_status_is_sent_once_more_and_only_once(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    passing = await campaign_with_contacts(conn, tmp_path, 20, phone_number_id=NUMBER)
    receipts = ReceiptConfig(failed_rate=0.0, duplicate_rate=0.0, failed_delay_s=(0.05, 0.1))
    async with harness(
        db_dsn, rate=20, receipts=receipts, plan=undeliverable(4, every_attempt=False)
    ) as h:
        await change_campaign_state(conn, passing, CampaignCommand.START)
        await settle(h, conn, passing, 4)
        assert [h.sent_to(phone(i)) for i in range(5)] == [2, 2, 2, 2, 1]
    rows = await conn.fetch(
        "SELECT state::text, attempts FROM contacts WHERE campaign_id = $1 ORDER BY id", passing
    )
    assert {r["state"] for r in rows} == {"sent"}  # the user became reachable again
    assert [r["attempts"] for r in rows[:5]] == [2, 2, 2, 2, 1]


async def test_a_contact_undeliverable_twice_ends_delivery_failed_after_two_messages(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign = await campaign_with_contacts(conn, tmp_path, 10, phone_number_id=NUMBER)
    receipts = ReceiptConfig(failed_rate=0.0, duplicate_rate=0.0, failed_delay_s=(0.05, 0.1))
    async with harness(
        db_dsn, rate=20, receipts=receipts, plan=undeliverable(3, every_attempt=True)
    ) as h:
        await change_campaign_state(conn, campaign, CampaignCommand.START)
        await settle(h, conn, campaign, 3)
        assert [h.sent_to(phone(i)) for i in range(4)] == [2, 2, 2, 1]  # never hammered
    rows = await conn.fetch(
        "SELECT state::text, error_code, attempts FROM contacts WHERE campaign_id = $1"
        " ORDER BY id LIMIT 4",
        campaign,
    )
    assert [(r["state"], r["error_code"], r["attempts"]) for r in rows] == [
        ("delivery_failed", 131026, 2),
        ("delivery_failed", 131026, 2),
        ("delivery_failed", 131026, 2),
        ("sent", None, 1),
    ]


# -- marketing preferences through the mock ------------------------------------------------


async def test_a_marketing_stop_stops_marketing_sends_only_and_a_resume_lifts_it(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    marketing = await campaign_with_contacts(conn, tmp_path, 30, phone_number_id=NUMBER)
    utility = await campaign_with_contacts(
        conn, tmp_path, 30, phone_number_id=NUMBER, name="utility"
    )
    await conn.execute(
        "UPDATE campaigns SET template_category = CASE id WHEN $1 THEN 'MARKETING'"
        " ELSE 'UTILITY' END WHERE id = ANY($2::bigint[])",
        marketing,
        [marketing, utility],
    )
    user = phone(29)  # last in both campaigns: still pending when the stop arrives
    receipts = ReceiptConfig(failed_rate=0.0, duplicate_rate=0.0)
    async with harness(db_dsn, rate=10, receipts=receipts) as h:
        control = h.mock.base_url + "/_control/user_preferences"

        async def preference(value: str) -> None:
            body = {"wa_id": user, "value": value, "phone_number_id": NUMBER}
            async with h.session.post(control, json=body) as resp:
                assert resp.status == 200 and (await resp.json())["webhook_status"] == 200

        await change_campaign_state(conn, marketing, CampaignCommand.START)
        await change_campaign_state(conn, utility, CampaignCommand.START)
        await until(lambda: _sent_at_least(h, 4))
        await preference("stop")
        stopped = await conn.fetchrow(
            "SELECT state::text, error_title FROM contacts WHERE campaign_id = $1 AND phone = $2",
            marketing,
            user,
        )
        assert stopped["state"] == "sending_failed"
        assert stopped["error_title"] == "opted out: stopped marketing messages (user_preferences)"
        await wait_final(conn, marketing, utility)
        assert h.sent_to(user) == 1  # the utility message, not the marketing one
        sent_to = [m.biz_opaque_callback_data for m in h.accepted() if m.to.lstrip("+") == user]
        decoded = decode_callback_data(sent_to[0] or "")
        assert decoded is not None and decoded.campaign_id == utility
        row = await conn.fetchrow("SELECT source, scope FROM suppressions WHERE phone = $1", user)
        assert (row["source"], row["scope"]) == ("user_preferences", "marketing")

        await preference("resume")
        assert await conn.fetchval("SELECT count(*) FROM suppressions") == 0
        # Lifted: the next marketing campaign takes the user and sends to it.
        again = await campaign_with_contacts(
            conn, tmp_path, 30, phone_number_id=NUMBER, name="next offer"
        )
        await conn.execute(
            "UPDATE campaigns SET template_category = 'MARKETING' WHERE id = $1", again
        )
        await change_campaign_state(conn, again, CampaignCommand.START)
        await wait_final(conn, again)
        assert h.sent_to(user) == 2
    assert await conn.fetchval(
        "SELECT state::text FROM contacts WHERE campaign_id = $1 AND phone = $2", again, user
    ) in ("sent", "delivered", "read")


async def _sent_at_least(h: Harness, n: int) -> bool:
    return len(h.accepted()) >= n


async def _webhook_up(h: Harness) -> bool:
    try:
        return await h.post(envelope()) == 200
    except aiohttp.ClientConnectionError:
        return False


# -- template quality and category in campaign status --------------------------------------


async def test_template_quality_and_category_events_are_shown_by_campaign_status(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign = await campaign_with_contacts(conn, tmp_path, 3, phone_number_id=NUMBER)
    template = {
        "message_template_id": 594425479261596,
        "message_template_name": "spring_sale",
        "message_template_language": "en_US",
    }
    quality = {
        "field": "message_template_quality_update",
        "value": {**template, "previous_quality_score": "GREEN", "new_quality_score": "YELLOW"},
    }
    category = {
        "field": "template_category_update",
        "value": {**template, "previous_category": "UTILITY", "new_category": "MARKETING"},
    }
    async with harness(db_dsn) as h:
        await until(lambda: _webhook_up(h))
        assert await h.post(envelope(quality)) == 200
        assert await h.post(envelope(category)) == 200
    shown = wa(db_dsn, "campaign", "status", str(campaign))
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("Template health:"))
    assert "quality YELLOW, category UTILITY -> MARKETING" in line, line
    as_json = wa(db_dsn, "campaign", "status", str(campaign), "--json")
    health = json.loads(as_json.stdout)["health"]["template"]
    assert (health["quality"], health["category"], health["previous_category"]) == (
        "YELLOW",
        "MARKETING",
        "UTILITY",
    )
