"""`contacts show` tells every attempt of a contact: the real daemon sends through the mock
API with transient errors (a retry, then success), the sender's own batched writes log each
attempt (contact_attempts, migration 0010), a receipt is applied by the reconciler's code,
and the command line prints all of it with the suppression status."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from daemon.core.states import CampaignCommand
from daemon.db import sender_store as store
from daemon.db.campaigns import change_campaign_state
from daemon.db.receipts_store import reconcile_batch, store_receipts
from daemon.mockapi.config import FaultConfig, MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.ops.contacts_out import contact_history
from daemon.whatsapp.webhook import ReceiptRow
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.helpers.data import campaign_with_contacts
from tests.test_cli import wa


async def test_show_prints_a_retry_then_the_success_and_the_receipt(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 60)
    faults = FaultConfig(transient_rate=0.3)
    async with start_mock_server(MockConfig(faults=faults, seed=11)) as mock:
        async with running_daemon(
            daemon_config(mock.base_url, sender={"max_attempts": 10}), db_dsn
        ):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            assert await wait_until_final(conn, cid) == {"sent": 60}
    # Every attempt of every contact is logged once, numbered 1..attempts, the last one sent.
    logged = await conn.fetch(
        "SELECT c.id, c.attempts, array_agg(a.attempt ORDER BY a.attempt) AS numbers,"
        " array_agg(a.outcome ORDER BY a.attempt) AS outcomes"
        " FROM contacts c JOIN contact_attempts a ON a.contact_id = c.id"
        " WHERE c.campaign_id = $1 GROUP BY c.id",
        cid,
    )
    assert len(logged) == 60
    for r in logged:
        assert r["numbers"] == list(range(1, r["attempts"] + 1))
        assert r["outcomes"][-1] == "sent"
        assert set(r["outcomes"][:-1]) <= {"retry_scheduled"}
    retried = next(r for r in logged if r["attempts"] > 1)
    contact = await conn.fetchrow("SELECT phone, wamid FROM contacts WHERE id = $1", retried["id"])
    # A delivered receipt, stored and applied by the receipts path's own code.
    receipt = ReceiptRow(
        contact["wamid"], "delivered", datetime.now(UTC), contact["phone"], "1000001",
        None, None, None, {"id": contact["wamid"], "status": "delivered"},
    )  # fmt: skip
    assert (await store_receipts(conn, [receipt])).stored == 1
    assert (await reconcile_batch(conn, 100, 3600.0)).applied == 1

    history = await contact_history(conn, cid, contact["phone"])
    (shown,) = history.contacts
    attempts = shown["attempt_history"]
    assert [a["attempt"] for a in attempts] == list(range(1, retried["attempts"] + 1))
    assert attempts[0]["outcome"] == "retry_scheduled" and attempts[0]["error_code"] is not None
    assert attempts[-1]["outcome"] == "sent" and attempts[-1]["wamid"] == contact["wamid"]
    assert [(r["status"], r["processing_state"]) for r in shown["receipts"]] == [
        ("delivered", "applied")
    ]

    result = await asyncio.to_thread(
        wa, db_dsn, "contacts", "show", str(cid), "+" + contact["phone"]
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    tried = [x for x in lines if re.match(r"  attempt \d+ at \d{4}-\d\d-\d\d ", x)]
    assert len(tried) == retried["attempts"]
    assert ": retry_scheduled " in tried[0] and re.search(r"retry_scheduled \d+ ", tried[0])
    assert tried[-1].split(": ", 1)[1].startswith(f"sent {contact['wamid']}")
    assert any(x.startswith("  receipt delivered at ") and "(applied)" in x for x in lines)
    assert lines[-1] == f"suppression: {contact['phone']} is not on the suppression list"


async def test_an_expired_lease_and_its_late_result_are_both_logged(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 1)
    await conn.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
    (claimed,) = await store.claim_contacts(conn, cid, "dead-daemon", 0.0, 1)
    await asyncio.sleep(0.01)
    expired = await store.expire_leases(conn, "retry", 0.0, 3, 60.0, "recoverer", 10)
    assert [r["id"] for r in expired] == [claimed.id]
    history = await contact_history(conn, cid, claimed.phone)
    (only,) = history.contacts[0]["attempt_history"]
    assert (only["attempt"], only["outcome"], only["unknown"]) == (1, "retry_scheduled", True)
    assert "lease expired" in only["error_title"]


async def test_the_campaign_reference_holds_without_a_per_row_foreign_key(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """Migration 0010 checks contacts.campaign_id per statement: same rules as the FK."""
    cid = await campaign_with_contacts(conn, tmp_path, 3)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await conn.execute(
            "INSERT INTO contacts (campaign_id, phone) VALUES ($1, '1'), ($2, '2')", cid, cid + 99
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="cannot change"):
        await conn.execute(
            "UPDATE contacts SET campaign_id = campaign_id + 1 WHERE campaign_id = $1", cid
        )
    await conn.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
    (claimed,) = await store.claim_contacts(conn, cid, "d", 0.0, 1)
    await store.expire_leases(conn, "retry", 0.0, 3, 60.0, "other", 10)
    assert await conn.fetchval("SELECT count(*) FROM contact_attempts") == 1
    # The row locks the campaign as the foreign key did: a delete waits for the inserter.
    async with conn.transaction():
        await conn.execute("INSERT INTO contacts (campaign_id, phone) VALUES ($1, '3')", cid)
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' OR mode = 'RowShareLock'"
        )
    await conn.execute("DELETE FROM campaigns WHERE id = $1", cid)
    assert await conn.fetchval("SELECT count(*) FROM contacts WHERE campaign_id = $1", cid) == 0
    assert await conn.fetchval("SELECT count(*) FROM contact_attempts") == 0
    assert claimed.id
