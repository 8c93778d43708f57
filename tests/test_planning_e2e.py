"""Campaign planning end to end (issue 19): the real daemon, real PostgreSQL, the mock Cloud API;
the daemon's wall clock injected where the test says what time it is."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from daemon.core.payload import Template
from daemon.core.phones import InvalidPhone, parse_phone
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state, create_campaign, get_campaign
from daemon.db.importer import import_contacts
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.ops.planning import PlanningChange, update_planning
from tests.helpers.daemon import (
    daemon_config,
    running_daemon,
    wait_campaign_state,
    wait_until_final,
)
from tests.helpers.data import campaign_with_contacts, write_csv


class FakeClock:
    """The daemon's wall clock, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def valid_numbers(prefix: str, count: int) -> list[str]:
    """`count` valid numbers `+prefix...` in order (phonenumbers decides)."""
    found: list[str] = []
    width = 15 - len(prefix)
    for i in range(10**4):
        candidate = f"+{prefix}{i:0{min(width, 4)}d}"
        try:
            found.append("+" + parse_phone(candidate).digits)
        except InvalidPhone:
            continue
        if len(found) == count:
            return found
    raise AssertionError(f"not {count} valid numbers under +{prefix}")


async def planned_campaign(conn: asyncpg.Connection, tmp_path: Path, phones: list[str]) -> int:
    campaign_id = await create_campaign(
        conn, "planned", Template("spring_sale", "en_US", ("first_name",)), "1000001"
    )
    rows = [(p, f"Name{i}") for i, p in enumerate(phones)]
    await import_contacts(conn, campaign_id, write_csv(tmp_path / "planned.csv", rows))
    return campaign_id


def sent_to(mock_state: object, prefix: str) -> int:
    accepted = mock_state.accepted  # type: ignore[attr-defined]
    return sum(1 for m in accepted if m.wa_id.startswith(prefix))


async def wake(conn: asyncpg.Connection) -> None:
    """What any campaign change does: NOTIFY the daemons (the test moved the clock)."""
    await conn.execute("SELECT pg_notify('wa_sender_campaigns', 'clock')")


async def settle(check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_window_holds_czech_contacts_until_nine_in_prague_and_us_ones_until_theirs(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    czech = valid_numbers("42060212", 30)  # Europe/Prague from the number
    new_york = valid_numbers("1212555", 10)  # America/New_York from the number
    toll_free = valid_numbers("1800555", 10)  # no zone of its own: the window zone
    los_angeles = valid_numbers("1650555", 10)  # America/Los_Angeles from the number
    campaign_id = await planned_campaign(conn, tmp_path, czech + new_york + toll_free + los_angeles)
    # Monday 7 December 2026, 08:59 in Prague (UTC+1).
    clock = FakeClock(datetime(2026, 12, 7, 7, 59, tzinfo=UTC))
    change = PlanningChange(window="Mon-Fri 09:00-17:00", window_zone="America/New_York")
    await update_planning(conn, campaign_id, change, default_zone="UTC", now=clock())
    await change_campaign_state(conn, campaign_id, CampaignCommand.START)
    async with start_mock_server(MockConfig()) as mock:
        async with running_daemon(daemon_config(mock.base_url), db_dsn, wall_clock=clock):
            await asyncio.sleep(1.5)  # three idle polls and a window refresh
            assert len(mock.state.accepted) == 0
            waiting = await conn.fetchval(
                "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND not_before > $2",
                campaign_id,
                clock(),
            )
            assert waiting == 60

            clock.now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Prague
            await wake(conn)
            await settle(lambda: sent_to(mock.state, "420") == 30)
            await asyncio.sleep(0.5)
            assert len(mock.state.accepted) == 30  # 03:00 in New York: the US ones wait

            clock.now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # 09:00 in New York
            await wake(conn)
            await settle(lambda: sent_to(mock.state, "1212") + sent_to(mock.state, "1800") == 20)
            await asyncio.sleep(0.5)
            assert sent_to(mock.state, "1650") == 0  # 06:00 in Los Angeles

            clock.now = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # 09:00 in Los Angeles
            await wake(conn)
            counts = await wait_until_final(conn, campaign_id)
            await wait_campaign_state(conn, campaign_id, "finished")
    assert counts == {"sent": 60}
    assert mock.state.duplicated_callback_data() == {}


async def test_a_window_that_closes_holds_the_rest_until_it_opens_again(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """At 17:00 the window closes: what is left waits (its interval moved to the next day by
    the daemon's window task), and goes the next morning."""
    czech = valid_numbers("42060213", 40)
    campaign_id = await planned_campaign(conn, tmp_path, czech)
    clock = FakeClock(datetime(2026, 12, 7, 16, 0, tzinfo=UTC))  # 17:00 Prague: closed
    change = PlanningChange(window="Mon-Fri 09:00-17:00")
    await update_planning(
        conn, campaign_id, change, default_zone="UTC", now=datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    )
    # Written while open (16:00 Prague); the daemon starts after the window closed.
    await change_campaign_state(conn, campaign_id, CampaignCommand.START)
    async with start_mock_server(MockConfig()) as mock:
        async with running_daemon(daemon_config(mock.base_url), db_dsn, wall_clock=clock):
            await asyncio.sleep(1.0)
            assert len(mock.state.accepted) == 0
            moved = await conn.fetchval(
                "SELECT min(not_before) FROM contacts WHERE campaign_id = $1", campaign_id
            )
            assert moved == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)  # Tuesday 09:00 Prague
            clock.now = datetime(2026, 12, 8, 8, 0, 1, tzinfo=UTC)
            await wake(conn)
            assert await wait_until_final(conn, campaign_id) == {"sent": 40}


async def test_a_campaign_scheduled_two_seconds_ahead_starts_on_time(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await campaign_with_contacts(conn, tmp_path, 20)
    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(mock.base_url, sender={"idle_poll_s": 30.0})
        async with running_daemon(config, db_dsn):
            await asyncio.sleep(0.5)  # the daemon is up and listening
            start_at = datetime.now(UTC) + timedelta(seconds=2)
            scheduled = await change_campaign_state(
                conn, campaign_id, CampaignCommand.SCHEDULE, start_at=start_at
            )
            assert scheduled.state.value == "scheduled"
            await settle(lambda: len(mock.state.accepted) > 0, timeout_s=10)
            first = datetime.fromtimestamp(mock.state.accepted[0].accepted_at, UTC)
            await wait_until_final(conn, campaign_id)
    started = (await get_campaign(conn, campaign_id)).started_at
    assert started is not None
    assert abs((started - start_at).total_seconds()) <= 1.0, (started, start_at)
    assert abs((first - start_at).total_seconds()) <= 1.0, (first, start_at)


async def test_a_paused_scheduled_campaign_does_not_start_and_resumes_as_scheduled(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    from daemon.ops.lifecycle import change_state

    campaign_id = await campaign_with_contacts(conn, tmp_path, 5)
    async with start_mock_server(MockConfig()) as mock:
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            start_at = datetime.now(UTC) + timedelta(seconds=1)
            await change_campaign_state(
                conn, campaign_id, CampaignCommand.SCHEDULE, start_at=start_at
            )
            paused = await change_state(conn, campaign_id, CampaignCommand.PAUSE)
            assert paused.campaign.state.value == "paused"
            await asyncio.sleep(1.5)
            assert len(mock.state.accepted) == 0
            # Resumed after its start time: it runs; a start time ahead would keep it waiting.
            resumed = await change_state(conn, campaign_id, CampaignCommand.RESUME)
            assert resumed.campaign.state.value == "running"
            assert await wait_until_final(conn, campaign_id) == {"sent": 5}


@pytest.mark.parametrize("finish_in_s", [4.0])
async def test_finish_by_spreads_the_contacts_instead_of_sending_at_full_speed(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path, finish_in_s: float
) -> None:
    """60 contacts to finish in 4 s: ~15/s, while the number could send 5,000/s."""
    campaign_id = await campaign_with_contacts(conn, tmp_path, 60)
    finish_by = datetime.now(UTC) + timedelta(seconds=finish_in_s)
    await update_planning(
        conn,
        campaign_id,
        PlanningChange(finish_by=finish_by),
        default_zone="UTC",
        now=datetime.now(UTC),
    )
    await change_campaign_state(conn, campaign_id, CampaignCommand.START)
    async with start_mock_server(MockConfig()) as mock:
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            await wait_until_final(conn, campaign_id, timeout_s=30)
    times = sorted(m.accepted_at for m in mock.state.accepted)
    assert len(times) == 60
    span = times[-1] - times[0]
    last = datetime.fromtimestamp(times[-1], UTC)
    # Spread over most of the time left (full speed takes ~20 ms), and done by the deadline.
    assert span >= 0.6 * finish_in_s, span
    assert last <= finish_by + timedelta(seconds=1.0), (last, finish_by)
    # Evenly: no second holds much more than its share (15/s, one claim step at a time).
    per_second: dict[int, int] = {}
    for t in times:
        per_second[int(t - times[0])] = per_second.get(int(t - times[0]), 0) + 1
    assert max(per_second.values()) <= 30, per_second
