"""Receipt timestamps never go backwards: Meta dates statuses in whole seconds by its clock,
the daemon records a send with microseconds by its own, so a delivery can be dated before its
send. Such a timestamp is clamped (sent_at <= delivered_at <= read_at, failed_at >= sent_at)
and the status still applies; whichever of the receipt and the send result comes first."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from daemon.core.decide import Decision
from daemon.core.model import ContactId
from daemon.core.payload import encode_callback_data
from daemon.core.states import ContactState
from daemon.db import receipts_store as store
from daemon.db.sender_store import SendResult, record_results
from daemon.whatsapp.webhook import ReceiptRow

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SENT_AT = T0 + timedelta(microseconds=750_000)  # the daemon's clock, 0.75 s into the second


def receipt(wamid: str, status: str, at: datetime, callback: str | None = None) -> ReceiptRow:
    raw: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(at.timestamp()))}
    error = (131026, "undeliverable") if status == "failed" else (None, None)
    return ReceiptRow(
        wamid=wamid,
        status=status,
        status_at=at,
        recipient_id="15550000000",
        phone_number_id="1000001",
        callback_data=callback,
        error_code=error[0],
        error_title=error[1],
        raw=raw,
    )


class Campaign:
    def __init__(self, conn: asyncpg.Connection, campaign_id: int) -> None:
        self.conn = conn
        self.id = campaign_id
        self.n = 0

    async def contact(self, state: ContactState, **columns: Any) -> int:
        self.n += 1
        values = {"campaign_id": self.id, "phone": f"1555{self.n:07d}", "attempts": 1, **columns}
        names = ", ".join(["state", *values])
        params = ", ".join(["$1::contact_state", *(f"${i}" for i in range(2, len(values) + 2))])
        contact_id: int = await self.conn.fetchval(
            f"INSERT INTO contacts ({names}) VALUES ({params}) RETURNING id",
            state.value,
            *values.values(),
        )
        return contact_id

    async def sent(self, wamid: str, sent_at: datetime = SENT_AT) -> int:
        return await self.contact(ContactState.SENT, wamid=wamid, sent_at=sent_at)

    async def row(self, contact_id: int) -> asyncpg.Record:
        return await self.conn.fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)


@pytest.fixture
async def campaign(conn: asyncpg.Connection) -> Campaign:
    campaign_id = await conn.fetchval(
        "INSERT INTO campaigns (name, template_name, template_language, phone_number_id, state)"
        " VALUES ('times', 'spring_sale', 'en_US', '1000001', 'running') RETURNING id"
    )
    return Campaign(conn, campaign_id)


async def apply(conn: asyncpg.Connection, *rows: ReceiptRow) -> None:
    await store.store_receipts(conn, list(rows))
    await store.reconcile_batch(conn, 1000, orphan_after_s=3600)


async def test_a_delivery_dated_before_the_send_is_clamped_to_it(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    contact = await campaign.sent("wamid.d")
    await apply(conn, receipt("wamid.d", "delivered", T0))  # the same second, truncated
    row = await campaign.row(contact)
    assert row["state"] == "delivered"
    assert row["delivered_at"] == row["sent_at"] == SENT_AT


async def test_a_read_without_delivery_dated_before_the_send_is_clamped_to_it(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    contact = await campaign.sent("wamid.r")
    await apply(conn, receipt("wamid.r", "read", T0 - timedelta(seconds=30)))
    row = await campaign.row(contact)
    assert row["state"] == "read"
    assert row["read_at"] == row["delivered_at"] == SENT_AT


async def test_a_read_dated_before_its_delivery_is_clamped_to_the_delivery(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    contact = await campaign.sent("wamid.rd")
    delivered = T0 + timedelta(seconds=5)
    await apply(conn, receipt("wamid.rd", "delivered", delivered))
    await apply(conn, receipt("wamid.rd", "read", T0 + timedelta(seconds=3)))
    row = await campaign.row(contact)
    assert (row["state"], row["delivered_at"], row["read_at"]) == ("read", delivered, delivered)


async def test_a_failure_dated_before_the_send_is_clamped_to_it(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    contact = await campaign.sent("wamid.f")
    await apply(conn, receipt("wamid.f", "failed", T0 - timedelta(seconds=1)))
    row = await campaign.row(contact)
    assert (row["state"], row["error_code"]) == ("delivery_failed", 131026)
    assert row["failed_at"] == SENT_AT


async def test_a_late_sent_dated_after_the_delivery_does_not_pass_it(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    contact = await campaign.contact(ContactState.IN_PROGRESS, claimed_by="d1")
    callback = encode_callback_data(campaign.id, contact, 1)
    delivered = T0 + timedelta(seconds=2)
    await apply(conn, receipt("wamid.ls", "delivered", delivered, callback))
    await apply(conn, receipt("wamid.ls", "sent", T0 + timedelta(seconds=4), callback))
    row = await campaign.row(contact)
    assert row["state"] == "delivered"
    assert row["sent_at"] == row["delivered_at"] == delivered


async def test_a_send_result_recorded_after_its_delivery_is_not_dated_after_it(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    """The receipt beat the send result to the database (matched by callback data)."""
    contact = await campaign.contact(ContactState.IN_PROGRESS, claimed_by="d1")
    callback = encode_callback_data(campaign.id, contact, 1)
    await apply(conn, receipt("wamid.early", "delivered", T0, callback))
    result = SendResult(
        ContactId(contact), 1, "15550000001", Decision(ContactState.SENT), SENT_AT, "wamid.early"
    )
    await record_results(conn, [result])
    row = await campaign.row(contact)
    assert row["state"] == "delivered"
    assert row["sent_at"] == row["delivered_at"] == T0


async def test_timestamps_never_go_backwards_whatever_the_order_and_skew(
    conn: asyncpg.Connection, campaign: Campaign
) -> None:
    rng = random.Random(21)
    contacts = []
    for i in range(300):
        wamid = f"wamid.p{i}"
        contact = await campaign.sent(wamid, SENT_AT + timedelta(seconds=rng.uniform(0, 5)))
        statuses = rng.sample(["sent", "delivered", "read", "failed"], rng.randint(1, 4))
        rows = [
            receipt(wamid, status, T0 + timedelta(seconds=rng.randint(-3, 8)))
            for status in statuses
        ]
        contacts.append((contact, rows))
    # Arrival in several batches, in random order.
    pending = [row for _, rows in contacts for row in rows]
    rng.shuffle(pending)
    for start in range(0, len(pending), 97):
        await apply(conn, *pending[start : start + 97])
    bad = await conn.fetch(
        "SELECT id, sent_at, delivered_at, read_at, failed_at, state FROM contacts"
        " WHERE campaign_id = $1 AND (delivered_at < sent_at OR read_at < delivered_at"
        " OR read_at < sent_at OR (state = 'delivery_failed' AND failed_at < sent_at))",
        campaign.id,
    )
    assert bad == []
    states = {r["state"] for r in await conn.fetch("SELECT state::text FROM contacts")}
    assert states >= {"delivered", "read", "delivery_failed"}
