"""Statuses applied at ingest (ingest_receipts, the webhook's group commit): the same rules as
the reconciler's batch (the same SQL text, compared), the same results for every state and
status, and what cannot be applied yet left pending for the reconciler."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import asyncpg

from daemon.core.states import ContactState
from daemon.db import receipts_store as store
from daemon.db.sql import query
from tests.test_reconciler import (
    RANK_ORDER,
    RECEIPT_EVENTS,
    T0,
    Contacts,
    contacts,  # noqa: F401  (the fixture)
    expected_state,
    receipt,
    receipts_of,
    reconcile,
)
from tests.test_reconciler import ReceiptRow as Row


async def ingest(conn: asyncpg.Connection, rows: list[Row]) -> store.IngestResult:
    """The rows in POSTs of 100, one group."""
    bodies = [(rows[i : i + 100], None) for i in range(0, len(rows), 100)]
    return await store.ingest_receipts(conn, bodies, orphan_after_s=3600)


def rules(name: str) -> str:
    """The CTEs from probed to verdicts, parameters numbered away."""
    text = query(name)
    shared = text[text.index("probed AS (") : text.index("verdicts AS (")]
    shared = "\n".join(
        line
        for line in shared.splitlines()
        if "ANY(ARRAY(SELECT contact_id FROM settled" not in line
    )
    shared = re.sub(r"\$\d+", "$n", shared)
    return re.sub(r"\s*--[^\n]*", "", shared)


def test_ingest_applies_by_the_text_of_the_reconcilers_rules() -> None:
    assert rules("ingest_receipts") == rules("reconcile_receipts")
    verdicts = {
        name: query(name)[query(name).index("verdicts AS (") :].split("\n),")[0]
        for name in ("ingest_receipts", "reconcile_receipts")
    }
    assert re.sub(r"\$\d+", "$n", verdicts["ingest_receipts"]) == re.sub(
        r"\$\d+", "$n", verdicts["reconcile_receipts"]
    )


async def test_every_state_and_status_pair_at_ingest_agrees_with_next_state(
    conn: asyncpg.Connection,
    contacts: Contacts,  # noqa: F811
) -> None:
    cases = []
    for state in ContactState:
        for status in ("sent", "delivered", "read", "failed", "played"):
            contact_id, wamid = await contacts.add(state)
            assert wamid is not None
            cases.append((state, status, contact_id, wamid))
    result = await ingest(
        conn,
        [
            receipt(w, status, error_code=131049 if status == "failed" else None)
            for _, status, _, w in cases
        ],
    )
    assert result.pending == 0 and result.applied + result.duplicate == len(cases)
    for state, status, contact_id, wamid in cases:
        want = expected_state(state, [status]) if status in RECEIPT_EVENTS else state
        row = await contacts.row(contact_id)
        assert (state, status, row["state"]) == (state, status, want.value)
        verdict = "applied" if want is not state else "duplicate"
        assert await receipts_of(conn, wamid) == [(status, verdict)], (state, status)


async def test_every_set_of_statuses_in_one_group_equals_applying_them_in_rank_order(
    conn: asyncpg.Connection,
    contacts: Contacts,  # noqa: F811
) -> None:
    subsets = [
        combo
        for size in range(1, len(RANK_ORDER) + 1)
        for combo in itertools.combinations(RANK_ORDER, size)
    ]
    cases = []
    rows: list[Row] = []
    for state in ContactState:
        for subset in subsets:
            contact_id, wamid = await contacts.add(state)
            assert wamid is not None
            cases.append((state, subset, contact_id))
            for i, status in enumerate(reversed(subset)):
                at = T0 + timedelta(seconds=10 * (len(subset) - i))
                rows.append(
                    receipt(wamid, status, at, error_code=131026 if status == "failed" else None)
                )
    await ingest(conn, rows)
    for state, subset, contact_id in cases:
        row = await contacts.row(contact_id)
        assert (state, subset, row["state"]) == (state, subset, expected_state(state, subset).value)


async def test_an_early_status_is_left_pending_and_the_reconciler_applies_it_after_the_send(
    conn: asyncpg.Connection,
    contacts: Contacts,  # noqa: F811
) -> None:
    listener_got: list[str] = []
    await conn.add_listener(store.RECEIPTS_CHANNEL, lambda *a: listener_got.append(a[3]))
    result = await ingest(conn, [receipt("wamid.early", "delivered")])
    assert (result.pending, result.applied) == (1, 0)
    assert await receipts_of(conn, "wamid.early") == [("delivered", "pending")]
    contact_id, _ = await contacts.add(ContactState.SENT, wamid=False)
    await conn.execute("UPDATE contacts SET wamid = 'wamid.early' WHERE id = $1", contact_id)
    assert (await reconcile(conn)).applied == 1
    assert (await contacts.row(contact_id))["state"] == "delivered"
    assert listener_got == ["1"]  # the reconcilers were told about the pending one


async def test_a_status_whose_contact_is_locked_elsewhere_is_left_pending(
    conn: asyncpg.Connection,
    contacts: Contacts,  # noqa: F811
    db_dsn: str,
) -> None:
    contact_id, wamid = await contacts.add(ContactState.SENT)
    assert wamid is not None
    other = await asyncpg.connect(db_dsn)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", contact_id)
            result = await ingest(conn, [receipt(wamid, "read")])
        assert result.pending == 1
        assert await receipts_of(conn, wamid) == [("read", "pending")]
    finally:
        await other.close()
    await conn.execute("UPDATE status_receipts SET next_try_at = now()")
    assert (await reconcile(conn)).applied == 1
    assert (await contacts.row(contact_id))["state"] == "read"
