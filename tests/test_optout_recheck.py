"""An opt-out stored while contacts of that phone are already claimed by a daemon (queued for
its rate limiter) is not sent: the opt-out NOTIFYs the phones, the daemon gives those contacts
back and the release makes them Sending failed `opted out: ...` within half a second; a
marketing-only stop drops only the marketing campaign's contact. The fallback reads the
suppressions added since its last look. Signed webhooks through the real daemon, the mock
recording every send, real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.engine.optout_watch import OptOutWatch, parse_payload
from daemon.mockapi.config import ReceiptConfig
from tests.helpers.data import campaign_with_contacts, phone
from tests.test_listening_e2e import NUMBER, envelope, harness, inbound, until, wait_final

LAST = 39  # the last of 40 contacts at 10 msg/s: claimed long before its turn


async def _state(conn: asyncpg.Connection, campaign: int, number: str) -> tuple[str, str | None]:
    row = await conn.fetchrow(
        "SELECT state::text, error_title FROM contacts WHERE campaign_id = $1 AND phone = $2",
        campaign,
        number,
    )
    return row["state"], row["error_title"]


async def test_a_stop_for_a_claimed_contact_is_not_sent(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign = await campaign_with_contacts(conn, tmp_path, 40, phone_number_id=NUMBER)
    user = phone(LAST)
    async with harness(db_dsn, rate=10) as h:
        await change_campaign_state(conn, campaign, CampaignCommand.START)

        async def claimed() -> bool:
            return (await _state(conn, campaign, user))[0] == "in_progress"

        await until(claimed)  # in the daemon's queue: the opt-out statement leaves it alone
        stop = inbound(user, "wamid.stop", type="text", text={"body": "STOP"})
        assert await h.post(envelope(stop)) == 200
        stored = time.monotonic()

        async def stopped() -> bool:
            return (await _state(conn, campaign, user))[0] == "sending_failed"

        await until(stopped, timeout_s=5, every_s=0.01)
        assert time.monotonic() - stored < 0.5
        await wait_final(conn, campaign)
        assert h.sent_to(user) == 0  # the mock proves it never went out
        assert h.sent_to(phone(LAST - 1)) == 1  # its neighbours did
    state, title = await _state(conn, campaign, user)
    assert (state, title) == ("sending_failed", "opted out: replied 'STOP'")
    attempts = await conn.fetchval(
        "SELECT attempts FROM contacts WHERE campaign_id = $1 AND phone = $2", campaign, user
    )
    assert attempts == 0  # the claim's attempt was undone: nothing was sent


async def test_a_marketing_stop_drops_the_claimed_marketing_contact_only(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    marketing = await campaign_with_contacts(conn, tmp_path, 40, phone_number_id=NUMBER)
    utility = await campaign_with_contacts(
        conn, tmp_path, 40, phone_number_id=NUMBER, name="utility"
    )
    await conn.execute(
        "UPDATE campaigns SET template_category = CASE id WHEN $1 THEN 'MARKETING'"
        " ELSE 'UTILITY' END",
        marketing,
    )
    user = phone(LAST)
    receipts = ReceiptConfig(failed_rate=0.0, duplicate_rate=0.0)
    async with harness(db_dsn, rate=20, receipts=receipts) as h:
        await change_campaign_state(conn, marketing, CampaignCommand.START)
        await change_campaign_state(conn, utility, CampaignCommand.START)

        async def claimed() -> bool:
            return (await _state(conn, marketing, user))[0] == "in_progress"

        await until(claimed)
        control = h.mock.base_url + "/_control/user_preferences"
        body = {"wa_id": user, "value": "stop", "phone_number_id": NUMBER}
        async with h.session.post(control, json=body) as resp:
            assert resp.status == 200 and (await resp.json())["webhook_status"] == 200
        await wait_final(conn, marketing, utility)
        assert h.sent_to(user) == 1  # the utility message only
    assert await _state(conn, marketing, user) == (
        "sending_failed",
        "opted out: stopped marketing messages (user_preferences)",
    )
    assert (await _state(conn, utility, user))[0] in ("sent", "delivered", "read")


class _Holder:
    def __init__(self) -> None:
        self.calls: list[tuple[frozenset[str], bool]] = []

    async def drop_opted_out(self, phones: Collection[str], marketing_only: bool) -> int:
        self.calls.append((frozenset(phones), marketing_only))
        return len(phones)


async def test_the_fallback_reads_suppressions_added_since_its_last_look(
    conn: asyncpg.Connection,
) -> None:
    holder = _Holder()
    watch = OptOutWatch(pool=None, holder=holder)  # type: ignore[arg-type]
    await conn.execute(
        "INSERT INTO suppressions (phone, reason, created_at)"
        " VALUES ('447700000001', 'old', now() - interval '1 hour')"
    )
    assert await watch.poll_once(conn) == 0  # the first look only notes where it starts
    await conn.execute(
        "INSERT INTO suppressions (phone, reason, source) VALUES ('447700000002', 'STOP',"
        " 'inbound')"
    )
    await conn.execute(
        "INSERT INTO suppressions (phone, reason, source, scope) VALUES ('447700000003',"
        " 'stop', 'user_preferences', 'marketing')"
    )
    assert await watch.poll_once(conn) == 2
    assert holder.calls == [
        (frozenset({"447700000002"}), False),
        (frozenset({"447700000003"}), True),
    ]


def test_notification_payloads() -> None:
    assert parse_payload('{"scope": "all", "phones": ["1", "2"]}') == (["1", "2"], False)
    assert parse_payload('{"scope": "marketing", "phones": ["1"]}') == (["1"], True)
    assert parse_payload('{"scope": "all", "phones": null}') == (None, False)  # read the list
    assert parse_payload("not json") == (None, False)
    assert parse_payload('{"phones": [1]}') == (None, False)


async def test_the_mock_posts_a_stop_on_demand(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign = await campaign_with_contacts(conn, tmp_path, 3, phone_number_id=NUMBER)
    receipts = ReceiptConfig(failed_rate=0.0, duplicate_rate=0.0)
    async with harness(db_dsn, receipts=receipts) as h:
        control = h.mock.base_url + "/_control/inbound"
        body = {"wa_id": phone(2), "text": "Stopp", "phone_number_id": NUMBER}

        async def posted() -> bool:  # 0 until the daemon's webhook listens
            async with h.session.post(control, json=body) as resp:
                assert resp.status == 200
                return bool((await resp.json())["webhook_status"] == 200)

        await until(posted, timeout_s=10, every_s=0.1)

        async def suppressed() -> bool:
            return bool(
                await conn.fetchval("SELECT count(*) FROM suppressions WHERE phone = $1", phone(2))
            )

        await until(suppressed, timeout_s=5)
        await change_campaign_state(conn, campaign, CampaignCommand.START)
        await wait_final(conn, campaign)
        assert h.sent_to(phone(2)) == 0 and h.sent_to(phone(1)) == 1
    assert (await _state(conn, campaign, phone(2)))[0] == "sending_failed"
