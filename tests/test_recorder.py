"""The result recorder: every result handed to it reaches the database, also at shutdown."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from daemon.core.decide import Decision
from daemon.core.model import ContactId
from daemon.core.states import ContactState
from daemon.db.pool import open_pool
from daemon.db.sender_store import SendResult
from daemon.engine.recorder import ResultRecorder
from tests.helpers.data import campaign_with_contacts


async def test_close_waits_for_the_flush_in_progress(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """The daemon cancels the recorder's task once `close` returns: a write that task had in
    progress must be done by then, or its results are lost (contacts left in_progress)."""
    campaign_id = await campaign_with_contacts(conn, tmp_path, 3)
    rows = await conn.fetch(
        "UPDATE contacts SET state = 'in_progress', attempts = 1, claimed_by = 'd1',"
        " lease_until = now() + interval '1 hour' WHERE campaign_id = $1 RETURNING id, phone",
        campaign_id,
    )
    now = datetime.now(UTC)
    results = [
        SendResult(ContactId(r["id"]), 1, r["phone"], Decision(ContactState.SENT), now, f"w.{i}")
        for i, r in enumerate(rows)
    ]
    blocker = await asyncpg.connect(db_dsn)
    try:
        async with open_pool(db_dsn, min_size=1, max_size=2) as pool:
            recorder = ResultRecorder(pool, flush_interval_s=0.01)
            running = asyncio.create_task(recorder.run())
            # Hold the rows so that the recorder's periodic write blocks half way.
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute(
                "SELECT 1 FROM contacts WHERE campaign_id = $1 FOR UPDATE", campaign_id
            )
            for result in results:
                recorder.add(result)
            await asyncio.sleep(0.2)  # the periodic flush took the batch and waits on the lock
            assert recorder.backlog == 0
            closing = asyncio.create_task(recorder.close())
            await asyncio.sleep(0.2)
            assert not closing.done()  # the write in progress is not finished yet
            await blocking.commit()
            await asyncio.wait_for(closing, 10)
            running.cancel()  # what the daemon does next
            await asyncio.gather(running, return_exceptions=True)
    finally:
        await blocker.close()
    states = await conn.fetch(
        "SELECT state::text FROM contacts WHERE campaign_id = $1", campaign_id
    )
    assert [r["state"] for r in states] == ["sent"] * 3
    assert recorder.recorded == 3
