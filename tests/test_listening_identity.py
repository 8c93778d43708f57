"""The identity of what WhatsApp reports, end to end (signed webhooks through the real daemon,
real PostgreSQL): a status of another business number than its campaign's is kept as an
orphan and never applied; the business-scoped user id (BSUID) of statuses, inbound messages
and marketing preferences is kept on the contacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.ops.reports import run_report
from tests.helpers.data import campaign_with_contacts, phone
from tests.test_listening_e2e import NUMBER, envelope, harness, inbound, until, wait_final

FOREIGN_NUMBER = "2000002"


def statuses_change(number_id: str, statuses: list[dict[str, Any]], **value: Any) -> dict:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": number_id},
            "statuses": statuses,
            **value,
        },
    }


def delivered(wamid: str, to: str) -> dict[str, Any]:
    return {
        "id": wamid,
        "status": "delivered",
        "timestamp": str(int(time.time())),
        "recipient_id": to,
    }


async def test_a_status_of_another_business_number_is_an_orphan_and_never_applied(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign = await campaign_with_contacts(conn, tmp_path, 10, phone_number_id=NUMBER)
    async with harness(db_dsn, rate=200) as h:
        await change_campaign_state(conn, campaign, CampaignCommand.START)
        await wait_final(conn, campaign)
        sent = {
            r["phone"]: r["wamid"]
            for r in await conn.fetch(
                "SELECT phone, wamid FROM contacts WHERE campaign_id = $1", campaign
            )
        }
        ours = [delivered(sent[phone(i)], phone(i)) for i in range(7)]
        foreign = [delivered(sent[phone(i)], phone(i)) for i in range(7, 10)]
        assert await h.post(envelope(statuses_change(NUMBER, ours))) == 200
        assert await h.post(envelope(statuses_change(FOREIGN_NUMBER, foreign))) == 200

        async def processed() -> bool:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM status_receipts WHERE processing_state <> 'pending'"
            )
            return n == 10

        await until(processed, 15)
    states = {
        r["phone"]: r["state"]
        for r in await conn.fetch(
            "SELECT phone, state::text FROM contacts WHERE campaign_id = $1", campaign
        )
    }
    assert [states[phone(i)] for i in range(7)] == ["delivered"] * 7
    assert [states[phone(i)] for i in range(7, 10)] == ["sent"] * 3  # never applied
    rows = await conn.fetch(
        "SELECT processing_state, orphan_reason, contact_id FROM status_receipts"
        " WHERE phone_number_id = $1",
        FOREIGN_NUMBER,
    )
    assert [r["processing_state"] for r in rows] == ["orphan"] * 3
    assert all(
        r["orphan_reason"].startswith(f"number_mismatch: phone_number_id {FOREIGN_NUMBER}")
        and f"campaign {campaign} ({NUMBER})" in r["orphan_reason"]
        and r["contact_id"] is None
        for r in rows
    )
    report = await run_report(conn, "orphan_receipts", None)  # visible to the operator
    assert len(report.rows) == 3
    assert all(str(r[-1]).startswith("number_mismatch") for r in report.rows)


async def test_user_ids_of_statuses_inbound_messages_and_preferences_fill_the_contacts(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    first = await campaign_with_contacts(conn, tmp_path, 6, phone_number_id=NUMBER)
    second = await campaign_with_contacts(conn, tmp_path, 6, phone_number_id=NUMBER, name="2nd")
    async with harness(db_dsn, rate=200) as h:
        await change_campaign_state(conn, first, CampaignCommand.START)
        await wait_final(conn, first)
        wamid = await conn.fetchval(
            "SELECT wamid FROM contacts WHERE campaign_id = $1 AND phone = $2", first, phone(0)
        )
        # A status names its user in contacts[] (as in Meta's and PyWa's samples) ...
        status = statuses_change(
            NUMBER,
            [delivered(wamid, phone(0))],
            contacts=[{"wa_id": phone(0), "user_id": "US.1349120865530274191"}],
        )
        assert await h.post(envelope(status)) == 200
        # ... an inbound reply in its contacts[] ...
        reply = inbound(phone(1), "wamid.hello", type="text", text={"body": "hello"})
        reply["value"]["contacts"][0]["user_id"] = "US.222"
        assert await h.post(envelope(reply)) == 200
        # ... and a marketing preference in the element itself.
        preference = {
            "field": "user_preferences",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
                "user_preferences": [
                    {
                        "wa_id": phone(2),
                        "user_id": "US.333",
                        "detail": "User requested to stop marketing messages",
                        "category": "marketing_messages",
                        "value": "stop",
                        "timestamp": int(time.time()),
                    }
                ],
            },
        }
        assert await h.post(envelope(preference)) == 200

        async def filled() -> bool:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND user_id IS NOT NULL",
                first,
            )
            return n == 3

        await until(filled, 15)
    rows = await conn.fetch(
        "SELECT campaign_id, phone, user_id FROM contacts WHERE user_id IS NOT NULL"
        " ORDER BY phone, campaign_id"
    )
    assert [(r["campaign_id"], r["phone"], r["user_id"]) for r in rows] == [
        (first, phone(0), "US.1349120865530274191"),
        (first, phone(1), "US.222"),
        (second, phone(1), "US.222"),  # the user's contacts in every campaign
        (first, phone(2), "US.333"),
        (second, phone(2), "US.333"),  # stopped (marketing) and identified in one statement
    ]
    assert (
        await conn.fetchval("SELECT user_id FROM status_receipts WHERE wamid = $1", wamid)
        == "US.1349120865530274191"
    )
