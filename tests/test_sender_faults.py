"""The sender under faults: permanent refusals, campaign-fatal errors, a database outage,
the messaging-limit guard, and rate accuracy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from daemon.core.ratelimit import TokenBucket
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state, get_campaign
from daemon.db.pool import connect
from daemon.engine import eventloop
from daemon.mockapi.config import FaultConfig, MockConfig
from daemon.mockapi.server import start_mock_server
from tests.helpers.daemon import (
    daemon_config,
    running_daemon,
    state_counts,
    wait_campaign_state,
    wait_until_final,
)
from tests.helpers.data import campaign_with_contacts, phone


async def test_permanent_refusals_become_sending_failed_with_code_and_title(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 100)
    forced = {phone(3): 131026, phone(7): 131050, phone(9): 130472}
    async with start_mock_server(MockConfig(faults=FaultConfig(forced_errors=forced))) as mock:
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            counts = await wait_until_final(conn, cid)
    assert counts == {"sent": 97, "sending_failed": 3}
    failed = await conn.fetch(
        "SELECT phone, error_code, error_title, attempts FROM contacts WHERE state = 'sending_failed' ORDER BY phone"
    )
    assert {r["phone"]: r["error_code"] for r in failed} == forced
    assert all(r["error_title"] and r["attempts"] == 1 for r in failed)
    suppressed = await conn.fetchval("SELECT array_agg(phone) FROM suppressions")
    assert suppressed == [phone(7)]


async def test_fatal_error_pauses_campaign_without_burning_contacts(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 3000)
    config = daemon_config("", sender={"rate_per_second": 500.0, "burst": 10.0})
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, sender={"rate_per_second": 500.0, "burst": 10.0})
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            while len(mock.state.accepted) < 300:
                await asyncio.sleep(0.02)
            mock.state.set_fail_all(190)
            await wait_campaign_state(conn, cid, "paused")
            await asyncio.sleep(0.5)
            accepted_at_pause = len(mock.state.accepted)
            requests_at_pause = mock.state.outcomes["requests"]
            await asyncio.sleep(1.0)
            assert mock.state.outcomes["requests"] == requests_at_pause  # no further sends
            campaign = await get_campaign(conn, cid)
            assert campaign.pause_reason is not None and "190" in campaign.pause_reason
        counts = await state_counts(conn, cid)
        assert counts.get("sent") == accepted_at_pause
        assert counts.get("in_progress", 0) == 0
        assert counts.get("sending_failed", 0) == 0 and counts.get("error", 0) == 0
        not_sent = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND state = 'initial' AND attempts = 0",
            cid,
        )
        assert not_sent == 3000 - accepted_at_pause  # released, attempt not counted

        # After the operator fixes the token and resumes, the rest goes out.
        mock.state.set_fail_all(None)
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.RESUME)
            assert await wait_until_final(conn, cid) == {"sent": 3000}
        assert mock.state.duplicated_callback_data() == {}


async def test_database_outage_mid_run_loses_no_result(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path, pg_server_dsn: str
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 4000)
    database = await conn.fetchval("SELECT current_database()")
    await conn.close()
    admin = await asyncpg.connect(pg_server_dsn)
    config = daemon_config("", sender={"rate_per_second": 400.0, "burst": 10.0})
    try:
        async with start_mock_server(MockConfig()) as mock:
            config = daemon_config(mock.base_url, sender={"rate_per_second": 400.0, "burst": 10.0})
            async with running_daemon(config, db_dsn):
                c = await connect(db_dsn)
                await change_campaign_state(c, cid, CampaignCommand.START)
                await c.close()
                while len(mock.state.accepted) < 800:
                    await asyncio.sleep(0.02)
                # The database goes away for 10 s: no new connections, every session killed.
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    database,
                )
                await asyncio.sleep(10)
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
                c = await connect(db_dsn)
                try:
                    counts = await wait_until_final(c, cid, timeout_s=60)
                finally:
                    await c.close()
            assert counts == {"sent": 4000}
            assert len(mock.state.accepted) == 4000
            assert mock.state.duplicated_callback_data() == {}
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_messaging_limit_guard_holds_the_campaign(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 400)
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, limits={"daily_unique_recipients": 250})
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            for _ in range(200):
                campaign = await get_campaign(conn, cid)
                if campaign.hold_reason and await state_counts(conn, cid) == {
                    "sent": 250,
                    "initial": 150,
                }:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # and nothing more goes out
            assert await state_counts(conn, cid) == {"sent": 250, "initial": 150}
            assert len(mock.state.accepted) == 250
            campaign = await get_campaign(conn, cid)
            assert campaign.state.value == "running"
            assert campaign.hold_reason is not None
            assert "messaging limit reached: 250 unique recipients" in campaign.hold_reason


async def test_rate_is_held_within_3_percent_and_no_window_exceeds_rate_plus_burst(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """The achieved rate is measured where the API sees it (the mock's acceptances, over 10 s);
    the burst bound where the daemon controls it: the moment each request leaves (the mock
    shares this test's event loop, so its own timestamps bunch whenever the loop is busy)."""
    rate, burst, contacts = 200.0, 20.0, 2200
    cid = await campaign_with_contacts(conn, tmp_path, contacts)
    sent_at: list[float] = []

    def on_send(_work: object, _outcome: object, seconds: float) -> None:
        sent_at.append(time.monotonic() - seconds)

    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, sender={"rate_per_second": rate, "burst": burst})
        async with running_daemon(config, db_dsn, on_send=on_send):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            await wait_until_final(conn, cid, timeout_s=60)
        times = sorted(m.accepted_monotonic for m in mock.state.accepted)
    assert len(times) == contacts
    # The first burst tokens go out at once; the steady rate is measured after them.
    steady = times[int(burst) :]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    print(f"achieved {achieved:.2f} msg/s for {rate} configured")
    assert abs(achieved - rate) / rate <= 0.03, achieved
    assert steady[-1] - steady[0] >= 10
    sent_at.sort()
    busiest, j = 0, 0
    for i, t in enumerate(sent_at):
        while sent_at[j] <= t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    print(f"busiest 1-second window of sends: {busiest} (limit {rate + burst:.0f})")
    assert busiest <= rate + burst, busiest


def test_waiting_for_rate_tokens_on_uvloop_does_not_spin(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop's timers have millisecond resolution: a sub-millisecond sleep between tokens fired
    at once and pacing became a busy loop (the daemon used 0.9 of a core at 1,000 msg/s)."""
    rate, contacts = 1000.0, 2000
    takes = 0
    take = TokenBucket.take

    def counting_take(self: TokenBucket, now: float) -> float:
        nonlocal takes
        takes += 1
        return take(self, now)

    monkeypatch.setattr(TokenBucket, "take", counting_take)

    async def scenario() -> float:
        conn = await connect(db_dsn)
        try:
            cid = await campaign_with_contacts(conn, tmp_path, contacts)
            async with start_mock_server(MockConfig()) as mock:
                config = daemon_config(mock.base_url, sender={"rate_per_second": rate, "burst": 10})
                async with running_daemon(config, db_dsn):
                    started = time.monotonic()
                    await change_campaign_state(conn, cid, CampaignCommand.START)
                    await wait_until_final(conn, cid, timeout_s=60)
                    return time.monotonic() - started
        finally:
            await conn.close()

    wall_s = eventloop.run(scenario(), "uvloop")
    print(f"{takes} token checks for {contacts} sends in {wall_s:.2f} s")
    assert wall_s >= contacts / rate * 0.9  # paced, not flooded
    # One check when a token is there, a few more around each wait (measured: 2.6 per send);
    # the busy loop made 77 per send.
    assert takes <= 10 * contacts
