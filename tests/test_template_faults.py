"""Answers that are about the campaign, not the contact: an unknown phone_number_id (100/33)
pauses the campaign after the first answer, and the breaker pauses it after N identical
request-shaped refusals in a row, instead of burning through the list."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state, get_campaign
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from tests.helpers.daemon import daemon_config, running_daemon, state_counts, wait_campaign_state
from tests.helpers.data import campaign_with_contacts


async def test_an_unknown_phone_number_id_pauses_the_campaign_after_the_first_answer(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 500, phone_number_id="999999")
    known = frozenset({"106540352242922"})
    async with start_mock_server(MockConfig(phone_number_ids=known)) as mock:
        await change_campaign_state(conn, cid, CampaignCommand.START)
        config = daemon_config(mock.base_url, sender={"concurrency": 8})
        async with running_daemon(config, db_dsn):
            await wait_campaign_state(conn, cid, "paused")
        refused = mock.state.outcomes["unknown_object"]
    assert 1 <= refused <= 8  # the first answer, and at most the sends already in flight
    campaign = await get_campaign(conn, cid)
    assert campaign.pause_reason is not None
    assert campaign.pause_reason.startswith("unknown phone_number_id") and "(100/33)" in (
        campaign.pause_reason
    )
    assert await state_counts(conn, cid) == {"initial": 500}  # not one sending_failed


async def test_the_breaker_pauses_after_n_identical_refusals_in_a_row(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 300)
    async with start_mock_server() as mock:
        mock.state.set_fail_all(132012)
        await change_campaign_state(conn, cid, CampaignCommand.START)
        config = daemon_config(mock.base_url, sender={"concurrency": 1, "breaker_threshold": 7})
        async with running_daemon(config, db_dsn):
            await wait_campaign_state(conn, cid, "paused")
        assert mock.state.requests == 7
    assert await state_counts(conn, cid) == {"sending_failed": 7, "initial": 293}
    reason = (await get_campaign(conn, cid)).pause_reason
    assert reason is not None and reason.startswith(
        "breaker: 7 sends in a row refused with code 132012"
    )


async def test_the_breaker_bounds_the_damage_at_full_concurrency(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 2000)
    async with start_mock_server() as mock:
        mock.state.set_fail_all(131009)
        await change_campaign_state(conn, cid, CampaignCommand.START)
        config = daemon_config(mock.base_url, sender={"breaker_threshold": 20})
        async with running_daemon(config, db_dsn):
            await wait_campaign_state(conn, cid, "paused")
    counts = await state_counts(conn, cid)
    assert 20 <= counts["sending_failed"] <= 20 + 64  # the run, plus sends already in flight
    assert counts["sending_failed"] + counts.get("initial", 0) == 2000


async def test_refusals_about_the_person_never_trip_the_breaker(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 60)
    async with start_mock_server() as mock:
        mock.state.set_fail_all(131026)  # not on WhatsApp
        await change_campaign_state(conn, cid, CampaignCommand.START)
        config = daemon_config(mock.base_url, sender={"breaker_threshold": 5})
        async with running_daemon(config, db_dsn):
            await wait_campaign_state(conn, cid, "finished")
    assert await state_counts(conn, cid) == {"sending_failed": 60}
