"""The sender end to end: real PostgreSQL, the real daemon, the mock Cloud API on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.engine.claimer import Work
from daemon.engine.sender import Sender
from daemon.mockapi.config import FaultConfig, MockConfig
from daemon.mockapi.server import start_mock_server
from tests.helpers.daemon import (
    daemon_config,
    running_daemon,
    state_counts,
    wait_campaign_state,
    wait_until_final,
)
from tests.helpers.data import campaign_with_contacts


async def test_every_contact_sent_exactly_once(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 10000)
    async with start_mock_server(MockConfig()) as mock:
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            counts = await wait_until_final(conn, cid)
            await wait_campaign_state(conn, cid, "finished")
        assert counts == {"sent": 10000}
        assert len(mock.state.accepted) == 10000
        assert mock.state.duplicated_callback_data() == {}
    wamids = await conn.fetchval(
        "SELECT count(DISTINCT wamid) FROM contacts WHERE campaign_id = $1", cid
    )
    assert wamids == 10000


async def test_transient_errors_are_retried_until_sent(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 500)
    faults = FaultConfig(transient_rate=0.10)
    async with start_mock_server(MockConfig(faults=faults, seed=7)) as mock:
        async with running_daemon(daemon_config(mock.base_url, sender={"max_attempts": 8}), db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            counts = await wait_until_final(conn, cid)
        assert counts == {"sent": 500}
        assert mock.state.outcomes["transient"] > 20
        assert mock.state.duplicated_callback_data() == {}
    retried = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND attempts > 1", cid
    )
    assert retried > 20


async def test_metrics_endpoint_shows_counters_moving_during_a_run(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    import aiohttp

    from daemon.engine.ports import free_port
    from daemon.engine.service import default_components

    cid = await campaign_with_contacts(conn, tmp_path, 1500)
    port = free_port()
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(
            mock.base_url,
            sender={"rate_per_second": 500.0, "burst": 10.0},
            webhook={"enabled": False},
            metrics={"enabled": True, "port": port},  # /metrics has a port of its own
        )
        async with running_daemon(config, db_dsn, components=default_components(config)):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            samples = []
            async with aiohttp.ClientSession() as http:
                for _ in range(3):
                    await asyncio.sleep(1.0)
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                        assert response.status == 200
                        samples.append(_sent_total(await response.text()))
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    assert response.status == 200
            await wait_until_final(conn, cid)
    assert samples[0] > 0 and samples[0] < samples[1] < samples[2], samples


def _sent_total(exposition: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("wa_sender_sends_total{") and 'outcome="accepted"' in line
    )


async def test_a_worker_that_fails_gives_its_contact_back_and_keeps_sending(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while a worker checks its contact: logged, the contact released (not stuck
    in_progress until the daemon restarts), the worker goes on."""
    cid = await campaign_with_contacts(conn, tmp_path, 200)
    cleared_now = Sender._cleared_now
    calls = 0

    def fails_twice(self: Sender, work: Work) -> bool:
        nonlocal calls
        calls += 1
        if calls in (5, 6):
            raise RuntimeError("a bug")
        return cleared_now(self, work)

    monkeypatch.setattr(Sender, "_cleared_now", fails_twice)
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, sender={"concurrency": 2})
        with capture_logs() as logs:
            async with running_daemon(config, db_dsn):
                await change_campaign_state(conn, cid, CampaignCommand.START)
                counts = await wait_until_final(conn, cid, timeout_s=20)
    assert counts == {"sent": 200}
    assert mock.state.duplicated_callback_data() == {}
    failures = [e for e in logs if e["event"] == "send_worker_failed"]
    assert len(failures) == 2 and "a bug" in failures[0]["error"]


async def test_at_a_low_rate_idle_workers_hold_no_claimed_contacts(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """64 send workers at 20 msg/s: one waits for the next token holding one contact, the
    others hold nothing. So the daemon holds about half a second of sending claimed (what a
    crash strands, what a pause releases), not a contact per worker."""
    cid = await campaign_with_contacts(conn, tmp_path, 300)
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(
            mock.base_url, sender={"rate_per_second": 20.0, "burst": 2.0, "concurrency": 64}
        )
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            while len(mock.state.accepted) < 20:
                await asyncio.sleep(0.05)
            held = []
            for _ in range(10):
                counts = await state_counts(conn, cid)
                held.append(counts.get("in_progress", 0))
                await asyncio.sleep(0.1)
    # The queue holds 0.5 s at 20/s (10 contacts), plus the one waiting for its token and the
    # one being sent; a contact taken by every idle worker would make it 70 or more.
    assert 0 < max(held) <= 14, held


async def test_operator_pause_stops_sending_and_gives_queued_contacts_back(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 3000)
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, sender={"rate_per_second": 300.0, "burst": 10.0})
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            while len(mock.state.accepted) < 300:
                await asyncio.sleep(0.02)
            await change_campaign_state(conn, cid, CampaignCommand.PAUSE)
            await asyncio.sleep(1.0)
            accepted = len(mock.state.accepted)
            await asyncio.sleep(1.0)
            assert len(mock.state.accepted) == accepted  # nothing more after the pause
            counts = await state_counts(conn, cid)
            assert counts.get("in_progress", 0) == 0, counts
            assert counts == {"sent": accepted, "initial": 3000 - accepted}
            await change_campaign_state(conn, cid, CampaignCommand.RESUME)
            assert await wait_until_final(conn, cid) == {"sent": 3000}
        assert mock.state.duplicated_callback_data() == {}
