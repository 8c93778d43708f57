"""The spool: results a daemon held but could not write (the database blocked writes past
the shutdown timeout) are written to a local file and replayed by the next start, so their
contacts end as the *known* outcomes they were, exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from daemon.config import with_overrides
from daemon.core.decide import Decision
from daemon.core.states import CampaignCommand, ContactState
from daemon.db import sender_store as store
from daemon.db.campaigns import change_campaign_state
from daemon.engine.sender_writes import Unwritten
from daemon.engine.spool import database_key, replay_spool, spool_files, write_spool
from tests.helpers.daemon import daemon_config
from tests.helpers.data import campaign_with_contacts

DAEMON = "spool-test-daemon"


async def _states(conn: asyncpg.Connection, cid: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT state::text AS s, count(*) AS n FROM contacts WHERE campaign_id = $1 GROUP BY 1",
        cid,
    )
    return {r["s"]: r["n"] for r in rows}


async def test_held_results_spooled_at_exit_are_replayed_once_as_known_outcomes(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 30)
    await change_campaign_state(conn, cid, CampaignCommand.START)
    claimed = await store.claim_contacts(conn, cid, DAEMON, 60.0, 30)
    assert len(claimed) == 30
    now = datetime.now(UTC)
    sent, released, cut_off = claimed[:20], claimed[20:25], claimed[25:]
    unwritten = Unwritten(
        results=[
            store.SendResult(
                c.id, c.attempt, c.phone, Decision(ContactState.SENT), now, f"wamid.SPOOL{c.id}"
            )
            for c in sent
        ],
        releases=[c.id for c in released],
        cut_off=[c.id for c in cut_off],
    )
    config = with_overrides(
        daemon_config("http://127.0.0.1:1"),
        recovery={"unknown_outcome": "error", "grace_s": 0.0},
        database={"spool_dir": str(tmp_path / "spool")},
    )
    directory = tmp_path / "spool"
    key = database_key("db-under-test")
    path = write_spool(directory, key, DAEMON, unwritten)
    assert spool_files(directory, key) == [path]
    assert await _states(conn, cid) == {"in_progress": 30}  # the database never saw them

    counts = await replay_spool(conn, config, path)

    assert counts == {"results": 20, "releases": 5, "cut_off": 5}
    assert not path.exists() and spool_files(directory, key) == []
    rows = await conn.fetch(
        "SELECT id, state::text AS state, wamid, outcome_unknown FROM contacts"
        " WHERE campaign_id = $1",
        cid,
    )
    by_id = {r["id"]: r for r in rows}
    for c in sent:  # known outcomes, with the wamid the API gave
        assert by_id[c.id]["state"] == "sent" and by_id[c.id]["wamid"] == f"wamid.SPOOL{c.id}"
        assert not by_id[c.id]["outcome_unknown"]
    for c in released:  # claimed but never sent: sendable again
        assert by_id[c.id]["state"] in {"initial", "retry_scheduled"}
    for c in cut_off:  # in flight at the cut: unknown, under the `error` policy
        assert by_id[c.id]["state"] == "error" and by_id[c.id]["outcome_unknown"]

    # Replaying a copy of the same spool again changes nothing (a result applies only to the
    # attempt it belongs to).
    before = await _states(conn, cid)
    again = write_spool(directory, key, DAEMON, unwritten)
    await replay_spool(conn, config, again)
    assert await _states(conn, cid) == before
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND wamid LIKE 'wamid.SPOOL%'",
            cid,
        )
        == 20
    )


async def test_a_failed_replay_keeps_the_spool_file_for_the_next_start(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 3)
    await change_campaign_state(conn, cid, CampaignCommand.START)
    claimed = await store.claim_contacts(conn, cid, DAEMON, 60.0, 3)
    now = datetime.now(UTC)
    unwritten = Unwritten(
        results=[
            store.SendResult(c.id, c.attempt, c.phone, Decision(ContactState.SENT), now, "w")
            for c in claimed
        ]
    )
    directory = tmp_path / "spool"
    key = database_key("db-under-test")
    path = write_spool(directory, key, DAEMON, unwritten)
    config = daemon_config("http://127.0.0.1:1")
    await conn.execute("SET default_transaction_read_only = on")
    try:
        await replay_spool(conn, config, path)
    except asyncpg.ReadOnlySQLTransactionError:
        pass
    else:
        raise AssertionError("a read-only database took the spool")
    finally:
        await conn.execute("SET default_transaction_read_only = off")
    assert spool_files(directory, key) == [path]  # kept, whole
    assert await _states(conn, cid) == {"in_progress": 3}
