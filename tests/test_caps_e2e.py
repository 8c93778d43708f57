"""Frequency caps per phone across campaigns ([limits] per_contact) end to end: exact across
daemons, waiting or `frequency_cap`, by template category; and the messaging limit counted
from the stored history (recipients sent before the limit was configured)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import campaign_progress, change_campaign_state, get_campaign
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.ops.render import planning_lines, utc_text
from tests.helpers.daemon import (
    daemon_config,
    running_daemon,
    state_counts,
    wait_campaign_state,
    wait_until_final,
)
from tests.helpers.data import campaign_with_contacts
from tests.helpers.proc import daemon_env, start_daemon, stop_daemon


async def _wait_settled(
    conn: asyncpg.Connection, campaign_ids: list[int], sent: int, timeout_s: float = 90
) -> dict[str, int]:
    """Until `sent` contacts of the campaigns are sent and none is in flight or due now."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE state = 'sent') AS sent,"
            " count(*) FILTER (WHERE state = 'in_progress'"
            "   OR (state IN ('initial', 'retry_scheduled') AND not_before <= now())) AS due"
            " FROM contacts WHERE campaign_id = ANY($1::bigint[])",
            campaign_ids,
        )
        if row["sent"] >= sent and row["due"] == 0:
            rows = await conn.fetch(
                "SELECT state::text AS s, count(*) AS n FROM contacts"
                " WHERE campaign_id = ANY($1::bigint[]) GROUP BY 1",
                campaign_ids,
            )
            return {r["s"]: r["n"] for r in rows}
        assert time.monotonic() < deadline, dict(row)
        await asyncio.sleep(0.1)


@pytest.mark.timeout(240)
async def test_three_daemons_three_campaigns_send_each_phone_once_under_1_per_24h(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """5,000 phones in each of 3 campaigns, in the same order (the daemons contend for the
    same phones at once), 3 daemon processes, cap 1/24h: exactly one message per phone."""
    phones = 5000
    campaigns = [
        await campaign_with_contacts(conn, tmp_path, phones, name=f"c{i}") for i in range(3)
    ]
    async with start_mock_server(MockConfig(validate=False)) as mock:
        env = daemon_env(
            db_dsn,
            mock.base_url,
            sender_rate_per_second="3000",
            sender_burst="100",
            limits_per_contact="1/24h",
        )
        daemons = [await start_daemon(env, tmp_path / f"daemon{i}.log") for i in range(3)]
        try:
            await asyncio.sleep(1.5)  # all three registered
            for cid in campaigns:
                await change_campaign_state(conn, cid, CampaignCommand.START)
            counts = await _wait_settled(conn, campaigns, phones)
            await asyncio.sleep(1.0)  # and nothing more goes out
            accepted = list(mock.state.accepted)
        finally:
            codes = [await stop_daemon(d) for d in daemons]
    assert codes == [0, 0, 0]
    per_phone = Counter(m.to for m in accepted)
    assert len(per_phone) == phones
    assert max(per_phone.values()) == 1  # 0 messages over the cap
    assert counts == {"sent": phones, "initial": 2 * phones}
    # The others wait for the cap: not_before a day after their phone's message.
    gaps = await conn.fetchrow(
        "SELECT min(w.not_before - s.claimed_at) AS lo, max(w.not_before - s.claimed_at) AS hi"
        " FROM contacts w JOIN contacts s ON s.phone = w.phone AND s.state = 'sent'"
        " WHERE w.state = 'initial' AND w.campaign_id = ANY($1::bigint[])",
        campaigns,
    )
    assert gaps["lo"] == gaps["hi"] == timedelta(hours=24)


async def test_capped_contacts_wait_fail_after_finish_by_and_other_categories_go(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    first = await campaign_with_contacts(conn, tmp_path, 40, name="first")
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, limits={"per_contact": ("1/24h", "3/7d")})
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, first, CampaignCommand.START)
            assert await wait_until_final(conn, first) == {"sent": 40}
            # The same 40 phones and 20 new ones, in three campaigns: one finishing in 3 s
            # (the cap frees them only in 24 h), one without an end, one of UTILITY.
            paced = await campaign_with_contacts(conn, tmp_path, 60, name="paced")
            open_ended = await campaign_with_contacts(conn, tmp_path, 60, name="open")
            utility = await campaign_with_contacts(conn, tmp_path, 60, name="utility")
            await conn.execute(
                "UPDATE campaigns SET finish_by = now() + interval '3 seconds' WHERE id = $1", paced
            )
            await conn.execute(
                "UPDATE campaigns SET template_category = 'UTILITY' WHERE id = $1", utility
            )
            for cid in (utility, paced):
                await change_campaign_state(conn, cid, CampaignCommand.START)
                await wait_until_final(conn, cid)
            await change_campaign_state(conn, open_ended, CampaignCommand.START)
            waiting = await _wait_settled(conn, [open_ended], 0)
            await wait_campaign_state(conn, paced, "finished")
    # UTILITY is not capped (and does not count): all 60 went.
    assert await state_counts(conn, utility) == {"sent": 60}
    # The paced campaign: its 20 new phones went; the 40 capped ones could not before its
    # finish-by: Sending failed, frequency_cap; the campaign finished.
    assert await state_counts(conn, paced) == {"sent": 20, "sending_failed": 40}
    titles = await conn.fetch(
        "SELECT DISTINCT split_part(error_title, ':', 1) AS t FROM contacts"
        " WHERE campaign_id = $1 AND state = 'sending_failed'",
        paced,
    )
    assert [r["t"] for r in titles] == ["frequency_cap"]
    # Open-ended: every phone was messaged in the last day (first or paced): all 60 wait.
    assert waiting == {"initial": 60}
    assert (await get_campaign(conn, open_ended)).state.value == "running"
    per_phone = Counter(m.to for m in mock.state.accepted if m.template == "spring_sale")
    # Over the two marketing campaigns that sent, each phone once; UTILITY on top.
    assert len(mock.state.accepted) == 40 + 20 + 60
    assert max(per_phone.values()) == 2  # one marketing + one utility at most
    next_free = await conn.fetchval(
        "SELECT min(not_before) FROM contacts WHERE campaign_id = $1", open_ended
    )
    assert (
        datetime.now(UTC) + timedelta(hours=23)
        < next_free
        <= datetime.now(UTC) + timedelta(hours=24)
    )
    # campaign status: how many wait for a cap, and when the next is free.
    progress = await campaign_progress(conn, open_ended)
    assert progress.window_waiting == (60, next_free)
    assert planning_lines(progress.campaign, progress.window_waiting) == [
        f"Waiting for a frequency cap: 60; the next is free {utc_text(next_free)}"
    ]
    assert (await campaign_progress(conn, utility)).window_waiting is None


async def test_the_messaging_limit_counts_recipients_sent_before_it_was_configured(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """300 recipients of the last 24 h, sent while no limit was configured (recipient_window
    empty), and a limit of 250: a new campaign sends nothing."""
    earlier = await campaign_with_contacts(conn, tmp_path, 300, name="earlier")
    await conn.execute(
        "UPDATE contacts SET state = 'sent', attempts = 1,"
        " claimed_at = now() - interval '2 hours', sent_at = now() - interval '2 hours'"
        " WHERE campaign_id = $1",
        earlier,
    )
    # And 100 sent two days ago: outside the rolling 24 h, not counted.
    older = await campaign_with_contacts(conn, tmp_path, 100, name="older", offset=5000)
    await conn.execute(
        "UPDATE contacts SET state = 'sent', attempts = 1,"
        " claimed_at = now() - interval '2 days', sent_at = now() - interval '2 days'"
        " WHERE campaign_id = $1",
        older,
    )
    assert await conn.fetchval("SELECT count(*) FROM recipient_window") == 0
    new = await campaign_with_contacts(conn, tmp_path, 100, name="new", offset=1000)
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, limits={"daily_unique_recipients": 250})
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, new, CampaignCommand.START)
            for _ in range(400):
                if (await get_campaign(conn, new)).hold_reason:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert len(mock.state.accepted) == 0
    campaign = await get_campaign(conn, new)
    assert campaign.hold_reason is not None
    assert "messaging limit reached: 250 unique recipients" in campaign.hold_reason
    assert await state_counts(conn, new) == {"initial": 100}
    assert await conn.fetchval("SELECT count(*) FROM recipient_window") == 300


async def test_caps_hold_under_the_messaging_limit_too(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """Caps and the messaging limit together (the capped claim inside the limit's lock): two
    campaigns sharing 300 phones, cap 1/24h, limit 1,000: one message per phone, and the
    limit's window holds the 300 recipients once."""
    a = await campaign_with_contacts(conn, tmp_path, 300, name="a")
    b = await campaign_with_contacts(conn, tmp_path, 300, name="b")
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(
            mock.base_url, limits={"per_contact": ("1/24h",), "daily_unique_recipients": 1000}
        )
        async with running_daemon(config, db_dsn):
            for cid in (a, b):
                await change_campaign_state(conn, cid, CampaignCommand.START)
            counts = await _wait_settled(conn, [a, b], 300)
            await asyncio.sleep(0.5)
        per_phone = Counter(m.to for m in mock.state.accepted)
    assert len(per_phone) == 300 and max(per_phone.values()) == 1
    assert counts == {"sent": 300, "initial": 300}
    assert await conn.fetchval("SELECT count(*) FROM recipient_window") == 300
