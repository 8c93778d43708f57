"""Listening end to end, the rest of issue 17 (signed webhooks through the real daemon, the
mock recording every send, real PostgreSQL): a failed 131026 status retried once, marketing
stop and resume through the mock's user_preferences, template quality and category shown in
`campaign status`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from daemon.core.payload import decode_callback_data
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.mockapi.config import ReceiptConfig
from daemon.mockapi.receipts import PlannedStatus
from daemon.mockapi.state import AcceptedMessage
from tests.helpers.data import campaign_with_contacts, phone
from tests.test_listening_e2e import NUMBER, Harness, harness, until, wait_final


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
