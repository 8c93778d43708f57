"""The richest template costs the sender no more Python calls per send than the body-only
one (tests/test_sender_hot_path.py's budget): its body is built by one generated call."""

from __future__ import annotations

import cProfile

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.loadtest.seeding import RICH, seed_campaigns
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.test_sender_hot_path import CALLS_PER_SEND_BUDGET, _until_accepted, _watched


async def test_python_calls_per_send_stay_within_budget_for_the_richest_template(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    [cid] = await seed_campaigns(conn, 8000, 1, RICH)
    async with start_mock_server(MockConfig(validate=False)) as mock:
        config = daemon_config(
            mock.base_url, sender={"rate_per_second": 1_000_000.0, "burst": 1000.0}
        )
        async with running_daemon(config, db_dsn):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            await _until_accepted(mock, 1000)
            profile = cProfile.Profile()
            first = len(mock.state.accepted)
            profile.enable()
            await _until_accepted(mock, 6000)
            profile.disable()
            sends = len(mock.state.accepted) - first
            assert await wait_until_final(conn, cid) == {"sent": 8000}
    entries = [e for e in profile.getstats() if not isinstance(e.code, str)]
    calls = sum(e.callcount for e in entries if _watched(e.code.co_filename))
    builds = sum(e.callcount for e in entries if e.code.co_filename.endswith("generated"))
    per_send = calls / sends
    assert per_send <= CALLS_PER_SEND_BUDGET, f"{per_send:.1f} Python calls per send"
    assert 0.9 <= builds / sends <= 1.1  # one generated builder call per send, counted above
