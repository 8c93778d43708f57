"""The sender's per-send Python work stays lean.

At full speed the daemon is bound by its own core, and its distance from the bare aiohttp
loop (the load test's floor) is the Python it runs per message beside aiohttp. Timings are
too noisy on shared machines to guard that, but call counts are not: cProfile counts every
Python-level call exactly. This counts the calls made per accepted send in the daemon's own
modules and in asyncio's queues and locks (where an `asyncio.Queue` or `Event` per message
would show), over a window of steady unthrottled sending.
"""

from __future__ import annotations

import asyncio
import cProfile
from pathlib import Path

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import RunningMock, start_mock_server
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.helpers.data import campaign_with_contacts

# Measured: 25.8 calls per send (b3dcbb9, claimed contacts in a WorkQueue); the tree before it
# made 43.8. A change that needs more on every send should say so here, with its reason.
CALLS_PER_SEND_BUDGET = 30.0
WATCHED = ("/daemon/", "/asyncio/queues.py", "/asyncio/locks.py")
NOT_WATCHED = ("/daemon/mockapi/", "/tests/")


def _watched(filename: str) -> bool:
    path = filename.replace("\\", "/")
    return any(w in path for w in WATCHED) and not any(n in path for n in NOT_WATCHED)


async def _until_accepted(mock: RunningMock, n: int) -> None:
    while len(mock.state.accepted) < n:
        await asyncio.sleep(0.005)


async def test_python_calls_per_send_stay_within_budget(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 8000)
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
    calls = sum(
        entry.callcount
        for entry in profile.getstats()
        if not isinstance(entry.code, str) and _watched(entry.code.co_filename)
    )
    per_send = calls / sends
    assert per_send <= CALLS_PER_SEND_BUDGET, f"{per_send:.1f} Python calls per send"
    assert per_send > 5  # the window really profiled the sender
