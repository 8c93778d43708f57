"""Campaign lifecycle commands and contact removal against the rules of the state model."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from daemon.core.states import CampaignCommand, CampaignState
from daemon.db.campaigns import campaign_progress, change_campaign_state, remove_contacts
from daemon.errors import TransitionError
from daemon.ops.lifecycle import change_state
from tests.helpers.data import campaign_with_contacts, phone

C = CampaignCommand


async def test_start_pause_resume_cancel(conn: asyncpg.Connection, tmp_path: Path) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 5)
    assert (await change_campaign_state(conn, cid, C.START)).state is CampaignState.RUNNING
    assert (await change_campaign_state(conn, cid, C.PAUSE)).state is CampaignState.PAUSED
    assert (await change_campaign_state(conn, cid, C.RESUME)).state is CampaignState.RUNNING
    assert (await change_campaign_state(conn, cid, C.CANCEL)).state is CampaignState.CANCELED


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ([], C.PAUSE),
        ([], C.RESUME),
        ([C.START], C.START),
        ([C.START], C.RESUME),
        ([C.START, C.PAUSE], C.PAUSE),
        ([C.CANCEL], C.START),
        ([C.CANCEL], C.CANCEL),
        ([C.START, C.CANCEL], C.RESUME),
    ],
)
async def test_forbidden_lifecycle_transition_is_an_error(
    conn: asyncpg.Connection, tmp_path: Path, path: list[CampaignCommand], command: CampaignCommand
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 1)
    for step in path:
        await change_campaign_state(conn, cid, step)
    state_before = (await campaign_progress(conn, cid)).campaign.state
    with pytest.raises(TransitionError, match=f"cannot {command.value}"):
        await change_campaign_state(conn, cid, command)
    assert (await campaign_progress(conn, cid)).campaign.state is state_before


async def test_cancel_moves_initial_and_retry_scheduled_to_canceled(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 4)
    await conn.execute(
        "UPDATE contacts SET state = 'retry_scheduled', attempts = 1 WHERE id = (SELECT min(id) FROM contacts)"
    )
    await conn.execute(
        "UPDATE contacts SET state = 'sent', attempts = 1 WHERE id = (SELECT max(id) FROM contacts)"
    )
    await change_campaign_state(conn, cid, C.START)
    result = await change_state(conn, cid, C.CANCEL)
    assert result.canceled == 3 and result.confirmed_by == 0  # no daemon runs
    counts = (await campaign_progress(conn, cid)).counts
    assert {s.value: n for s, n in counts.items() if n} == {"canceled_by_admin": 3, "sent": 1}


async def test_remove_only_while_draft_or_paused(conn: asyncpg.Connection, tmp_path: Path) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 3)
    removed, not_removed = await remove_contacts(conn, cid, [phone(0), "15559999999"])
    assert removed == [phone(0)]
    assert not_removed == {"15559999999": "not in this campaign"}
    await change_campaign_state(conn, cid, C.START)
    with pytest.raises(TransitionError, match="only while it is draft or paused"):
        await remove_contacts(conn, cid, [phone(1)])
    await change_campaign_state(conn, cid, C.PAUSE)
    removed, _ = await remove_contacts(conn, cid, [phone(1)])
    assert removed == [phone(1)]
    counts = (await campaign_progress(conn, cid)).counts
    assert {s.value: n for s, n in counts.items() if n} == {"initial": 1, "removed": 2}
