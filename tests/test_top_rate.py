"""The top messaging tier: 1,000 msg/s per number configured is what is sent, with the shipped
config.toml (the automatic burst), against the mock limited to 1,000 msg/s."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg
import pytest

from daemon.config import load_config
from daemon.core.ratelimit import burst_for
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.engine.service import sending_burst
from daemon.errors import ConfigError
from daemon.loadtest.analysis import throughput
from daemon.loadtest.mockproc import TOKEN, MockSettings, fetch_accepted, fetch_stats, start_mock
from daemon.loadtest.processes import free_port, stop
from tests.helpers.daemon import wait_until_final
from tests.helpers.data import campaign_with_contacts
from tests.helpers.proc import REPO, daemon_env, start_daemon, stop_daemon

RATE = 1000.0


@pytest.mark.parametrize(
    ("rate", "configured", "burst"),
    [
        (80.0, 0.0, 8.0),
        (1000.0, 0.0, 100.0),
        (5.0, 0.0, 1.0),  # at least one token
        (0.5, 0.0, 1.0),
        (1000.0, 10.0, 10.0),  # configured: as configured
        (80.0, 200.0, 200.0),
    ],
)
def test_the_automatic_burst_is_a_tenth_of_the_rate(
    rate: float, configured: float, burst: float
) -> None:
    assert burst_for(rate, configured) == burst


def test_the_shipped_config_leaves_the_burst_automatic() -> None:
    shipped = load_config(REPO / "config.toml", environ={})
    assert shipped.sender.burst == 0.0
    # What the bucket sends with at the top tier: 100 less the arrival-jitter reserve (10).
    assert sending_burst(RATE, shipped.sender.burst) == 90.0


async def test_1000_msg_per_s_is_achieved_within_1_percent_with_the_shipped_config(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    contacts = 20_000
    cid = await campaign_with_contacts(conn, tmp_path, contacts)
    mock = await start_mock(MockSettings(api_limit=RATE), tmp_path / "mock.log")
    env = daemon_env(
        db_dsn,
        mock.base_url,
        whatsapp_access_token=TOKEN,
        sender_rate_per_second=f"{RATE:g}",
        webhook_port=str(free_port()),
    )
    del env["WA_SENDER_SENDER_BURST"]  # the shipped config.toml's (cwd is the repository)
    daemon = await start_daemon(env, tmp_path / "daemon.log")
    try:
        await change_campaign_state(conn, cid, CampaignCommand.START)
        counts = await wait_until_final(conn, cid, timeout_s=90)
        async with aiohttp.ClientSession() as session:
            accepted = await fetch_accepted(session, mock.base_url)
            stats = await fetch_stats(session, mock.base_url)
    finally:
        assert await stop_daemon(daemon) == 0
        await stop(mock.child, 10)
    figures = throughput(list(accepted.accepted_at), min(accepted.accepted_at))
    print(
        f"\n1,000 msg/s configured, shipped config: {figures}; mock outcomes {stats.get('outcomes')}"
    )
    assert counts == {"sent": contacts}
    assert abs(figures["sustained_per_s"] - RATE) <= 0.01 * RATE


def test_a_negative_burst_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"sender\.burst must be a finite number from 0 to"):
        load_config(None, environ={"WA_SENDER_SENDER_BURST": "-1"})
