"""Pause and cancel are immediate stops: once `wa-sender campaign pause|cancel` returns, no
message of the campaign leaves any daemon (the mock's count does not grow), and after a cancel
every contact is final, retry_scheduled included."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from daemon.core.states import PENDING_STATES, CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.loadtest.seeding import seed_campaigns
from daemon.mockapi.config import FaultConfig, MockConfig
from daemon.mockapi.server import RunningMock, start_mock_server
from daemon.ops.lifecycle import StopNotConfirmed, stop_campaign
from tests.helpers.daemon import daemon_config, running_daemon, state_counts
from tests.helpers.proc import REPO

RATE = 2000.0
SETTLE_S = 1.5  # after the command returned, how long the daemons keep running and are watched
SENDING_BEFORE_STOP = 2000  # messages accepted before the stop (about a second of sending)


def campaign_sends(mock: RunningMock, campaign_id: int) -> int:
    """Messages of this campaign the mock accepted (callback data ws1:<campaign>:...)."""
    prefix = f"ws1:{campaign_id}:"
    return sum(
        n for key, n in mock.state.count_by_callback_data().items() if key.startswith(prefix)
    )


async def cli(dsn: str, *args: str) -> tuple[int, str, str, float]:
    """`wa-sender ARGS` as a process, while this event loop keeps the daemon running:
    (exit code, stdout, stderr, wall-clock seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_SENDER_")}
    env["DATABASE_URL"] = dsn
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - started


async def wait_for_sends(
    mock: RunningMock, campaign_id: int, n: int, timeout_s: float = 60
) -> None:
    """Until the mock accepted `n` messages of the campaign (the daemon is sending)."""
    deadline = time.monotonic() + timeout_s
    while campaign_sends(mock, campaign_id) < n:
        assert time.monotonic() < deadline, "the daemon does not send"
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class StopFigures:
    """What one stop under load measured."""

    contacts: int
    sent_before: int  # accepted by the mock when the command was started
    sent_at_return: int
    sent_after: int  # SETTLE_S later
    command_s: float  # the stop as the command measured it (flip -> return)
    wall_s: float  # the CLI process, start to exit
    result: dict[str, Any]
    counts: dict[str, int]


@asynccontextmanager
async def sending_campaign(
    conn: asyncpg.Connection, db_dsn: str, contacts: int, *, daemons: int = 1
) -> AsyncIterator[tuple[RunningMock, int]]:
    """A campaign of `contacts` being sent at RATE msg/s (20 ms API latency) by `daemons`
    in-process daemons."""
    [campaign_id] = await seed_campaigns(conn, contacts, 1)
    faults = FaultConfig(latency_ms=20, jitter_ms=10)
    async with start_mock_server(MockConfig(faults=faults, validate=False)) as mock:
        config = daemon_config(
            mock.base_url,
            sender={"rate_per_second": RATE, "burst": RATE / 10, "concurrency": 128},
        )
        async with running_daemon(config, db_dsn):
            if daemons > 1:
                async with running_daemon(config, db_dsn):
                    await change_campaign_state(conn, campaign_id, CampaignCommand.START)
                    yield mock, campaign_id
            else:
                await change_campaign_state(conn, campaign_id, CampaignCommand.START)
                yield mock, campaign_id


async def stop_under_load(
    conn: asyncpg.Connection, db_dsn: str, contacts: int, command: str, *, daemons: int = 1
) -> StopFigures:
    """Send, run `wa-sender campaign COMMAND ID --json` mid-campaign, watch SETTLE_S more."""
    async with sending_campaign(conn, db_dsn, contacts, daemons=daemons) as (mock, cid):
        await wait_for_sends(mock, cid, SENDING_BEFORE_STOP)
        before = campaign_sends(mock, cid)
        code, out, err, wall_s = await cli(db_dsn, "campaign", command, str(cid), "--json")
        at_return = campaign_sends(mock, cid)
        assert code == 0, err
        await asyncio.sleep(SETTLE_S)  # the daemons keep running: nothing may leave them
        after = campaign_sends(mock, cid)
    result = json.loads(out)
    figures = StopFigures(
        contacts,
        before,
        at_return,
        after,
        result["stop"]["seconds"],
        wall_s,
        result,
        await state_counts(conn, cid),
    )
    print(
        f"{command} of {contacts:,} contacts at {RATE:.0f} msg/s: {figures.command_s:.3f} s "
        f"(process {wall_s:.2f} s), sent before {before}, at return {at_return}, "
        f"{SETTLE_S} s after {after}; counts {figures.counts}"
    )
    return figures


def assert_cancel_held(figures: StopFigures) -> None:
    """No message after the return, every contact final, the command within 2 s."""
    assert figures.sent_after == figures.sent_at_return  # 0 messages after it returned
    assert figures.result["state"] == "canceled"
    pending = {s.value for s in PENDING_STATES} & set(figures.counts)
    assert not pending, figures.counts  # every contact final, retry_scheduled included
    # Sent: what the daemon knows the API accepted; a send that timed out although the API
    # took it is an unknown outcome (Canceled by admin here, moved on by a receipt).
    assert figures.counts.get("sent", 0) <= figures.sent_at_return
    assert sum(figures.counts.values()) == figures.contacts
    assert figures.result["stop"]["daemons_confirmed"] >= 1
    assert figures.command_s <= 2.0


def assert_pause_held(figures: StopFigures) -> None:
    """No message after the return; nothing left in progress; the rest waits, unsent."""
    assert figures.sent_after == figures.sent_at_return
    assert figures.result["state"] == "paused"
    assert "in_progress" not in figures.counts, figures.counts
    assert figures.counts.get("sent", 0) <= figures.sent_at_return
    unsent = figures.counts.get("initial", 0) + figures.counts.get("retry_scheduled", 0)
    assert unsent >= figures.contacts - figures.sent_at_return
    assert sum(figures.counts.values()) == figures.contacts
    assert figures.command_s <= 2.0


async def test_cancel_under_load_sends_nothing_after_it_returns(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    assert_cancel_held(await stop_under_load(conn, db_dsn, 20_000, "cancel"))


async def test_pause_under_load_sends_nothing_after_it_returns_and_resume_finishes(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    contacts = 10_000
    async with sending_campaign(conn, db_dsn, contacts) as (mock, cid):
        await wait_for_sends(mock, cid, SENDING_BEFORE_STOP)
        code, out, err, _ = await cli(db_dsn, "campaign", "pause", str(cid), "--json")
        assert code == 0, err
        at_return = campaign_sends(mock, cid)
        await asyncio.sleep(SETTLE_S)
        assert campaign_sends(mock, cid) == at_return
        counts = await state_counts(conn, cid)
        assert "in_progress" not in counts and counts["sent"] == at_return
        assert json.loads(out)["stop"]["seconds"] <= 2.0
        code, out, err, _ = await cli(db_dsn, "campaign", "resume", str(cid))
        assert (code, out.strip()) == (0, f"campaign {cid} is running"), err
        await wait_for_sends(mock, cid, contacts)
    assert mock.state.duplicated_callback_data() == {}
    assert await state_counts(conn, cid) == {"sent": contacts}


async def test_cancel_with_two_daemons_waits_for_both(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    figures = await stop_under_load(conn, db_dsn, 10_000, "cancel", daemons=2)
    assert_cancel_held(figures)
    assert figures.result["stop"]["daemons_confirmed"] == 2


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_cancel_of_200k_contacts_at_2000_per_second(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    assert_cancel_held(await stop_under_load(conn, db_dsn, 200_000, "cancel"))


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_pause_of_200k_contacts_at_2000_per_second(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    assert_pause_held(await stop_under_load(conn, db_dsn, 200_000, "pause"))


# -- daemons that do not confirm ----------------------------------------------------------------


async def _campaign_with_claims(conn: asyncpg.Connection, daemon_id: str) -> int:
    """A running campaign of 5 contacts, 2 of them in progress, claimed by `daemon_id`."""
    [cid] = await seed_campaigns(conn, 5, 1)
    await change_campaign_state(conn, cid, CampaignCommand.START)
    await conn.execute(
        "UPDATE contacts SET state = 'in_progress', attempts = 1, claimed_by = $2,"
        " lease_until = now() + interval '1 minute'"
        " WHERE id IN (SELECT id FROM contacts WHERE campaign_id = $1 ORDER BY id LIMIT 2)",
        cid,
        daemon_id,
    )
    return cid


async def _daemon_row(conn: asyncpg.Connection, daemon_id: str, send_bound_s: float) -> None:
    await conn.execute(
        "INSERT INTO daemons (id, hostname, pid, send_bound_s) VALUES ($1, 'elsewhere', 1, $2)",
        daemon_id,
        send_bound_s,
    )


async def test_a_daemon_cut_off_from_the_database_is_waited_for_until_its_send_bound(
    conn: asyncpg.Connection,
) -> None:
    """Alive but partitioned: it cannot confirm, and it stops sending by its fence. The stop
    waits until its last heartbeat is older than its send bound, then its claims become
    Canceled by admin with an unknown outcome (a receipt may still prove a send)."""
    await _daemon_row(conn, "partitioned", send_bound_s=1.5)
    cid = await _campaign_with_claims(conn, "partitioned")
    started = time.monotonic()
    result = await stop_campaign(conn, cid, CampaignCommand.CANCEL)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 5.0
    assert [d.id for d in result.silent] == ["partitioned"] and result.confirmed_by == 0
    assert (result.canceled, result.unknown_outcome) == (5, 2)
    assert await state_counts(conn, cid) == {"canceled_by_admin": 5}
    unknown = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND outcome_unknown", cid
    )
    assert unknown == 2


async def test_a_daemon_that_heartbeats_but_never_confirms_fails_the_stop_naming_it(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    await _daemon_row(conn, "stuck", send_bound_s=0.5)
    cid = await _campaign_with_claims(conn, "stuck")
    beat = await asyncpg.connect(db_dsn)

    async def keep_beating() -> None:
        while True:
            await beat.execute("UPDATE daemons SET heartbeat_at = now() WHERE id = 'stuck'")
            await asyncio.sleep(0.1)

    beating = asyncio.create_task(keep_beating())
    try:
        with pytest.raises(StopNotConfirmed, match=r"daemon stuck .* has not confirmed"):
            await stop_campaign(conn, cid, CampaignCommand.PAUSE, stuck_margin_s=0.5)
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        await beat.close()
    assert await conn.fetchval("SELECT state::text FROM campaigns WHERE id = $1", cid) == "paused"


async def test_a_daemon_silent_for_longer_than_its_bound_is_not_waited_for(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(
        "INSERT INTO daemons (id, hostname, pid, send_bound_s, heartbeat_at)"
        " VALUES ('crashed', 'h', 1, 14, now() - interval '1 hour')"
    )
    cid = await _campaign_with_claims(conn, "crashed")
    result = await stop_campaign(conn, cid, CampaignCommand.CANCEL)
    assert result.seconds < 1.0 and result.silent == [] and result.confirmed_by == 0
    assert (result.canceled, result.unknown_outcome) == (5, 2)
