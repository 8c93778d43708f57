"""The reconciler on real PostgreSQL: stored receipts applied to contacts by the one-statement
batch, against the pure state model, in every order, by several reconcilers at once."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from daemon.config import WebhookConfig
from daemon.core.decide import Decision
from daemon.core.model import ContactId
from daemon.core.payload import decode_callback_data, encode_callback_data
from daemon.core.states import (
    RECEIPT_EVENTS,
    ContactState,
    ForbiddenTransition,
    next_state,
)
from daemon.db import receipts_store as store
from daemon.db.pool import open_pool
from daemon.db.sender_store import SendResult, record_results
from daemon.db.sql import query, report_path
from daemon.engine.reconciler import Reconciler, listen_for_receipts
from daemon.engine.recorder import ResultRecorder
from daemon.whatsapp.webhook import ReceiptRow

S = ContactState
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RANK_ORDER = ("sent", "delivered", "read", "failed")
"""The order in which one batch's statuses of a contact take effect."""

# Columns a contact has in each state, so that "changed" means "changed state".
_STATE_COLUMNS: dict[ContactState, dict[str, Any]] = {
    S.INITIAL: {},
    S.INVALID_RECORD: {"invalid_reason": "invalid phone"},
    S.IN_PROGRESS: {"claimed_by": "d1", "lease_until": T0 + timedelta(hours=1)},
    S.RETRY_SCHEDULED: {"next_attempt_at": T0, "outcome_unknown": True},
    S.SENT: {"sent_at": T0},
    S.DELIVERED: {"sent_at": T0, "delivered_at": T0},
    S.READ: {"sent_at": T0, "delivered_at": T0, "read_at": T0},
    S.DELIVERY_FAILED: {"sent_at": T0, "failed_at": T0, "error_code": 131026},
    S.SENDING_FAILED: {"failed_at": T0, "error_code": 131026},
    S.ERROR: {"failed_at": T0, "outcome_unknown": True},
    S.CANCELED_BY_ADMIN: {"canceled_at": T0},
    S.REMOVED: {"removed_at": T0},
    S.SUCCESSFULLY_SUBMITTED: {"sent_at": T0},
}


def expected_state(state: ContactState, statuses: Iterable[str]) -> ContactState:
    """The pure model: statuses applied one by one in rank order; a receipt the state model
    forbids (or does not know) changes nothing."""
    for status in sorted(statuses, key=RANK_ORDER.index):
        try:
            state = next_state(state, RECEIPT_EVENTS[status])
        except ForbiddenTransition:
            pass
    return state


def receipt(
    wamid: str,
    status: str,
    at: datetime = T0,
    *,
    callback: str | None = None,
    error_code: int | None = None,
    recipient_id: str | None = "15550000000",
) -> ReceiptRow:
    raw: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(at.timestamp()))}
    if error_code is not None:
        raw["errors"] = [{"code": error_code, "title": f"error {error_code}"}]
    return ReceiptRow(
        wamid=wamid,
        status=status,
        status_at=at,
        recipient_id=recipient_id,
        phone_number_id="1000001",
        callback_data=callback,
        error_code=error_code,
        error_title=f"error {error_code}" if error_code is not None else None,
        raw=raw,
    )


class Contacts:
    """Contacts of one campaign, made in any state with plain SQL."""

    def __init__(self, conn: asyncpg.Connection, campaign_id: int) -> None:
        self.conn = conn
        self.campaign_id = campaign_id
        self._n = itertools.count(1)

    @classmethod
    async def create(cls, conn: asyncpg.Connection) -> Contacts:
        campaign_id = await conn.fetchval(
            "INSERT INTO campaigns (name, template_name, template_language, phone_number_id,"
            " state) VALUES ('receipts', 'spring_sale', 'en_US', '1000001', 'running')"
            " RETURNING id"
        )
        return cls(conn, campaign_id)

    async def add(
        self,
        state: ContactState = S.SENT,
        *,
        wamid: bool = True,
        attempts: int = 1,
        **columns: Any,
    ) -> tuple[int, str | None]:
        """A contact in `state` with the columns typical of it; (id, wamid)."""
        n = next(self._n)
        values: dict[str, Any] = {
            "campaign_id": self.campaign_id,
            "phone": f"1555{n:07d}",
            "state": state.value,
            "attempts": attempts,
            **_STATE_COLUMNS[state],
            **columns,
        }
        values["wamid"] = f"wamid.C{self.campaign_id}N{n}" if wamid else None
        names = ", ".join(values)
        params = ", ".join(
            f"${i}::contact_state" if name == "state" else f"${i}"
            for i, name in enumerate(values, 1)
        )
        contact_id = await self.conn.fetchval(
            f"INSERT INTO contacts ({names}) VALUES ({params}) RETURNING id", *values.values()
        )
        return contact_id, values["wamid"]

    async def row(self, contact_id: int) -> asyncpg.Record:
        return await self.conn.fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)

    def callback(self, contact_id: int, attempt: int = 1) -> str:
        return encode_callback_data(self.campaign_id, contact_id, attempt)


@pytest.fixture
async def contacts(conn: asyncpg.Connection) -> Contacts:
    return await Contacts.create(conn)


async def reconcile(conn: asyncpg.Connection, batch: int = 1000) -> store.ReconcileResult:
    return await store.reconcile_batch(conn, batch, orphan_after_s=3600)


async def receipts_of(conn: asyncpg.Connection, wamid: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT status, processing_state FROM status_receipts WHERE wamid = $1 ORDER BY id", wamid
    )
    return [(r["status"], r["processing_state"]) for r in rows]


# -- the SQL agrees with the pure state model ---------------------------------------------


async def test_every_state_and_receipt_status_pair_agrees_with_next_state(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    cases = []
    for state in ContactState:
        for status in ("sent", "delivered", "read", "failed", "played"):
            contact_id, wamid = await contacts.add(state)
            assert wamid is not None
            cases.append((state, status, contact_id, wamid))
    await store.store_receipts(
        conn,
        [
            receipt(w, status, error_code=131049 if status == "failed" else None)
            for _, status, _, w in cases
        ],
    )
    result = await reconcile(conn)
    assert result.picked == len(cases) and result.unmatched == 0 and result.busy == 0

    for state, status, contact_id, wamid in cases:
        want = expected_state(state, [status]) if status in RECEIPT_EVENTS else state
        row = await contacts.row(contact_id)
        assert (state, status, row["state"]) == (state, status, want.value)
        verdict = "applied" if want is not state else "duplicate"
        assert await receipts_of(conn, wamid) == [(status, verdict)], (state, status)


async def test_every_set_of_statuses_in_one_batch_equals_applying_them_in_rank_order(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    subsets = [
        combo
        for size in range(1, len(RANK_ORDER) + 1)
        for combo in itertools.combinations(RANK_ORDER, size)
    ]
    cases = []
    rows: list[ReceiptRow] = []
    for state in ContactState:
        for subset in subsets:
            contact_id, wamid = await contacts.add(state)
            assert wamid is not None
            cases.append((state, subset, contact_id))
            # Posted in reverse rank order: arrival order must not matter within a batch.
            for i, status in enumerate(reversed(subset)):
                at = T0 + timedelta(seconds=10 * (len(subset) - i))
                rows.append(
                    receipt(wamid, status, at, error_code=131026 if status == "failed" else None)
                )
    await store.store_receipts(conn, rows)
    result = await reconcile(conn)
    assert result.picked == len(rows)

    for state, subset, contact_id in cases:
        row = await contacts.row(contact_id)
        assert (state, subset, row["state"]) == (state, subset, expected_state(state, subset).value)


# -- the reference samples ----------------------------------------------------------------


async def test_samples_are_applied_like_their_status_says(
    conn: asyncpg.Connection, contacts: Contacts, receipt_samples: dict[str, bytes]
) -> None:
    from daemon.whatsapp.webhook import parse_webhook

    expectations = {
        "status_sent_pywa.json": (S.IN_PROGRESS, S.SENT),
        "status_delivered_pywa.json": (S.SENT, S.DELIVERED),
        "status_read_pywa.json": (S.DELIVERED, S.READ),
        "status_played_pywa.json": (S.READ, S.READ),
        "status_failed_130472_pywa.json": (S.SENT, S.DELIVERY_FAILED),
        # 131049: the per-user marketing cap, retried after 24 h (core/failed_status.py)
        "status_failed_131049_metadocs.json": (S.SENT, S.RETRY_SCHEDULED),
        "status_sent_marketing_pmp_metadocs.json": (S.RETRY_SCHEDULED, S.SENT),
        "status_v24_no_conversation_no_pricing_metadocs.json": (S.IN_PROGRESS, S.SENT),
        "status_sent_capture_djangocrm.json": (S.IN_PROGRESS, S.SENT),
        "status_read_no_delivered_capture_djangocrm.json": (S.SENT, S.READ),
        "status_change_sent_user_initiated_capture_ammarbay.json": (S.ERROR, S.SENT),
        "status_sent_biz_opaque_callback_data_pywa.json": (S.IN_PROGRESS, S.SENT),
    }
    checks = []
    for name, (before, after) in expectations.items():
        document = json.loads(receipt_samples[name])
        value = document["entry"][0]["changes"][0]["value"]
        # sent from the campaign's number (another number's status is an orphan, migration 12)
        value.setdefault("metadata", {})["phone_number_id"] = "1000001"
        status = value["statuses"][0]
        if "biz_opaque_callback_data" in status:  # matched by callback data alone
            contact_id, _ = await contacts.add(before, wamid=False)
            status["biz_opaque_callback_data"] = contacts.callback(contact_id)
        else:
            contact_id, wamid = await contacts.add(before)
            status["id"] = wamid
        parsed = parse_webhook(json.dumps(document).encode())
        await store.store_receipts(conn, parsed.receipts)
        checks.append((name, contact_id, after, status))
    # The group read names a message we never sent: stored, matches nothing.
    group = parse_webhook(receipt_samples["status_read_group_pywa.json"]).receipts
    await store.store_receipts(conn, group)

    result = await reconcile(conn)
    assert result.unmatched == 1
    for name, contact_id, after, status in checks:
        row = await contacts.row(contact_id)
        assert row["state"] == after.value, name
        if status["status"] == "failed":
            error = status["errors"][0]
            assert (row["error_code"], row["error_title"]) == (error["code"], error["title"])
            assert row["error_details"] == error["error_data"]["details"]
            stamp = datetime.fromtimestamp(int(status["timestamp"]), UTC)
            if after is S.RETRY_SCHEDULED:
                assert row["wamid"] is None and row["prior_wamid"] == status["id"]
                wait = (row["next_attempt_at"] - datetime.now(UTC)).total_seconds()
                assert 23 * 3600 < wait <= 24 * 3600
            else:
                # The samples are dated years before these contacts were sent (T0): clamped.
                assert row["failed_at"] == max(stamp, row["sent_at"])
        if "biz_opaque_callback_data" in status:
            assert row["wamid"] == status["id"]  # filled from the receipt
        if name == "status_read_no_delivered_capture_djangocrm.json":
            stamp = datetime.fromtimestamp(int(status["timestamp"]), UTC)
            assert row["read_at"] == row["delivered_at"] == max(stamp, row["sent_at"])
    played = await conn.fetchval(
        "SELECT processing_state FROM status_receipts WHERE status = 'played'"
    )
    assert played == "duplicate"
    assert (
        await conn.fetchval(
            "SELECT processing_state FROM status_receipts WHERE wamid = '<WHATSAPP_MESSAGE_ID>'"
        )
        == "pending"
    )


# -- ordering, duplicates, events ----------------------------------------------------------


async def test_read_receipt_before_delivered_sets_read_and_fills_delivered_at(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, wamid = await contacts.add(S.SENT)
    assert wamid
    read_at, delivered_at = T0 + timedelta(seconds=9), T0 + timedelta(seconds=5)
    await store.store_receipts(conn, [receipt(wamid, "read", read_at)])
    await reconcile(conn)
    await store.store_receipts(conn, [receipt(wamid, "delivered", delivered_at)])
    await reconcile(conn)
    row = await contacts.row(contact_id)
    assert row["state"] == "read"
    assert row["read_at"] == read_at
    assert row["delivered_at"] == read_at  # set once, by the read that came first
    assert await receipts_of(conn, wamid) == [("read", "applied"), ("delivered", "duplicate")]


async def test_delivered_before_sent_stays_delivered(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, _ = await contacts.add(S.IN_PROGRESS, wamid=False)
    callback = contacts.callback(contact_id)
    await store.store_receipts(
        conn, [receipt("wamid.ds", "delivered", T0 + timedelta(seconds=2), callback=callback)]
    )
    await reconcile(conn)
    await store.store_receipts(conn, [receipt("wamid.ds", "sent", T0, callback=callback)])
    await reconcile(conn)
    row = await contacts.row(contact_id)
    assert row["state"] == "delivered"
    assert (row["sent_at"], row["delivered_at"]) == (T0, T0 + timedelta(seconds=2))
    # The late sent filled sent_at (unknown until then), so it did change the contact.
    assert await receipts_of(conn, "wamid.ds") == [("delivered", "applied"), ("sent", "applied")]


async def test_duplicates_change_nothing_and_are_kept_as_duplicates(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, wamid = await contacts.add(S.SENT)
    assert wamid
    at = T0 + timedelta(seconds=3)
    await store.store_receipts(conn, [receipt(wamid, "delivered", at)] * 3)
    await reconcile(conn)
    await store.store_receipts(conn, [receipt(wamid, "delivered", at + timedelta(seconds=1))])
    await reconcile(conn)
    row = await contacts.row(contact_id)
    assert (row["state"], row["delivered_at"]) == ("delivered", at)
    assert await receipts_of(conn, wamid) == [
        ("delivered", "applied"),
        ("delivered", "duplicate"),
        ("delivered", "duplicate"),
        ("delivered", "duplicate"),
    ]


async def test_failed_after_read_is_an_event_only(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, wamid = await contacts.add(S.READ)
    assert wamid
    await store.store_receipts(conn, [receipt(wamid, "failed", error_code=131026)])
    await reconcile(conn)
    row = await contacts.row(contact_id)
    assert (row["state"], row["error_code"]) == ("read", None)
    assert await receipts_of(conn, wamid) == [("failed", "duplicate")]


async def test_sent_and_failed_in_one_batch_end_in_delivery_failed(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, _ = await contacts.add(S.IN_PROGRESS, wamid=False)
    callback = contacts.callback(contact_id)
    failed_at = T0 + timedelta(seconds=4)
    await store.store_receipts(
        conn,
        [
            receipt("wamid.sf", "failed", failed_at, callback=callback, error_code=131049),
            receipt("wamid.sf", "sent", T0, callback=callback),
        ],
    )
    await reconcile(conn)
    row = await contacts.row(contact_id)
    assert row["state"] == "delivery_failed"
    assert (row["sent_at"], row["failed_at"], row["error_code"]) == (T0, failed_at, 131049)
    assert await receipts_of(conn, "wamid.sf") == [("failed", "applied"), ("sent", "applied")]


async def test_failed_131050_adds_the_phone_to_the_suppression_list(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, wamid = await contacts.add(S.SENT)
    assert wamid
    await store.store_receipts(conn, [receipt(wamid, "failed", error_code=131050)])
    result = await reconcile(conn)
    assert result.suppressed == 1
    row = await contacts.row(contact_id)
    assert (row["state"], row["error_code"]) == ("delivery_failed", 131050)
    reason = await conn.fetchval("SELECT reason FROM suppressions WHERE phone = $1", row["phone"])
    assert reason == store.SUPPRESS_REASON


# -- matching ------------------------------------------------------------------------------


async def test_a_receipt_before_its_send_result_is_applied_once_the_send_is_recorded(
    db_dsn: str, conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, _ = await contacts.add(S.IN_PROGRESS, wamid=False)
    # No callback data: only the wamid can match, and the contact does not have it yet.
    await store.store_receipts(conn, [receipt("wamid.late", "delivered", T0)])
    async with open_pool(db_dsn, min_size=1, max_size=2) as pool:
        reconciler = Reconciler(pool, WebhookConfig())
        first = await reconciler.reconcile_due()
        assert (first.picked, first.unmatched) == (1, 1)
        assert (await reconciler.reconcile_due()).picked == 0  # backing off, not re-scanned
        wait = await conn.fetchval("SELECT next_try_at - now() FROM status_receipts")
        assert wait >= timedelta(seconds=store.BACKOFF_MIN_S / 2)

        # The send result comes through the recorder, which tells the reconciler.
        recorder = ResultRecorder(pool, on_recorded=reconciler.on_sends_recorded)
        recorder.add(
            SendResult(ContactId(contact_id), 1, "15550000001", Decision(S.SENT), T0, "wamid.late")
        )
        await recorder.flush()
        after = await reconciler.reconcile_due()
    assert (after.picked, after.applied) == (1, 1)
    row = await contacts.row(contact_id)
    assert (row["state"], row["wamid"], row["delivered_at"]) == ("delivered", "wamid.late", T0)


async def test_callback_data_matches_before_the_send_result_and_fills_the_wamid(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, _ = await contacts.add(S.IN_PROGRESS, wamid=False)
    callback = contacts.callback(contact_id)
    await store.store_receipts(conn, [receipt("wamid.cb", "sent", T0, callback=callback)])
    assert (await reconcile(conn)).applied == 1
    row = await contacts.row(contact_id)
    assert (row["state"], row["wamid"], row["sent_at"]) == ("sent", "wamid.cb", T0)
    assert (row["claimed_by"], row["lease_until"]) == (None, None)
    # The send result lands afterwards and keeps what the receipt said.
    result = SendResult(ContactId(contact_id), 1, row["phone"], Decision(S.SENT), T0, "wamid.cb")
    await record_results(conn, [result])
    assert (await contacts.row(contact_id))["wamid"] == "wamid.cb"


@pytest.mark.parametrize("state", [S.RETRY_SCHEDULED, S.ERROR, S.IN_PROGRESS])
@pytest.mark.parametrize("status", ["sent", "delivered", "read"])
async def test_a_receipt_with_an_attempts_callback_data_resolves_an_unknown_outcome(
    conn: asyncpg.Connection, contacts: Contacts, state: ContactState, status: str
) -> None:
    contact_id, _ = await contacts.add(
        state,
        wamid=False,
        attempts=2,
        outcome_unknown=state is not S.IN_PROGRESS,
        next_attempt_at=T0 + timedelta(minutes=1),
        error_title="outcome unknown: lease expired before the send result was recorded",
    )
    callback = contacts.callback(contact_id, attempt=1)
    await store.store_receipts(conn, [receipt("wamid.uo", status, T0, callback=callback)])
    assert (await reconcile(conn)).applied == 1
    row = await contacts.row(contact_id)
    assert row["state"] == status
    assert row["wamid"] == "wamid.uo"
    assert row["outcome_unknown"] is False
    assert (row["next_attempt_at"], row["error_title"]) == (None, None)
    assert (row["claimed_by"], row["lease_until"]) == (None, None)


@pytest.mark.parametrize(
    "callback",
    [
        "ws1:{other}:{contact}:1",  # the contact is not in that campaign
        "ws1:{campaign}:{contact}:3",  # an attempt the contact never made
        "ws1:{campaign}:{contact}:0",
        "ws2:{campaign}:{contact}:1",
        "ws1:{campaign}:{contact}",
        "ws1:{campaign}:+{contact}:1",
        "some data",
    ],
)
async def test_callback_data_that_does_not_name_this_attempt_does_not_match(
    conn: asyncpg.Connection, contacts: Contacts, callback: str
) -> None:
    contact_id, _ = await contacts.add(S.IN_PROGRESS, wamid=False, attempts=2)
    value = callback.format(
        campaign=contacts.campaign_id, other=contacts.campaign_id + 1, contact=contact_id
    )
    await store.store_receipts(conn, [receipt("wamid.nm", "sent", callback=value)])
    result = await reconcile(conn)
    assert (result.picked, result.unmatched) == (1, 1)
    assert (await contacts.row(contact_id))["state"] == "in_progress"


@pytest.mark.parametrize(
    "value",
    [
        "ws1:1:2:3",
        "ws1:0001:2:3",
        "ws1:123456789012345678:2:3",
        "ws1:1:2",
        "ws1:1:2:3:4",
        "ws1:1:-2:3",
        "ws1: 1:2:3",
        "ws1:1:2:3\n",
        "ws1:1:٣:3",
        "WS1:1:2:3",
        "",
    ],
)
async def test_the_sql_decodes_callback_data_like_the_pure_decoder(
    conn: asyncpg.Connection, value: str
) -> None:
    pattern = "^ws1:[0-9]{1,18}:[0-9]{1,18}:[0-9]{1,9}$"  # as in reconcile_receipts
    assert pattern in query("reconcile_receipts")
    decoded = await conn.fetchval(
        "SELECT CASE WHEN $1 ~ $2 THEN string_to_array($1, ':') END", value, pattern
    )
    ref = decode_callback_data(value)
    if ref is None:
        assert decoded is None
    else:
        assert [int(x) for x in decoded[1:]] == [ref.campaign_id, ref.contact_id, ref.attempt]


# -- orphans and back-off ------------------------------------------------------------------


async def test_receipts_never_matched_become_orphans_and_are_logged(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    await store.store_receipts(
        conn, [receipt("wamid.other-app", "delivered", recipient_id="4915112345678")]
    )
    await reconcile(conn)
    await conn.execute(
        "UPDATE status_receipts SET received_at = now() - interval '2 hours', next_try_at = now()"
    )
    with capture_logs() as logs:
        async with open_pool(db_dsn, min_size=1, max_size=1) as pool:
            result = await Reconciler(pool, WebhookConfig(orphan_after_s=3600)).reconcile_due()
    assert result.orphaned == 1
    row = await conn.fetchrow("SELECT processing_state, processed_at FROM status_receipts")
    assert row["processing_state"] == "orphan" and row["processed_at"] is not None
    orphaned = [e for e in logs if e["event"] == "receipt_orphaned"]
    assert len(orphaned) == 1 and orphaned[0]["wamid"] == "wamid.other-app"
    rows = await conn.fetch(report_path("orphan_receipts").read_text())  # the report lists it
    assert [r["wamid"] for r in rows] == ["wamid.other-app"]
    assert list(rows[0].keys()) == [
        "id",
        "received_at",
        "wamid",
        "status",
        "recipient_id",
        "callback_data",
        "reason",
    ]
    assert rows[0]["reason"] == "no contact matched"


async def test_a_contact_locked_elsewhere_leaves_its_receipts_pending_for_later(
    db_dsn: str, conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, wamid = await contacts.add(S.SENT)
    assert wamid
    await store.store_receipts(conn, [receipt(wamid, "delivered")])
    other = await asyncpg.connect(db_dsn)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", contact_id)
            result = await reconcile(conn)
            assert (result.picked, result.busy) == (1, 1)
    finally:
        await other.close()
    assert await receipts_of(conn, wamid) == [("delivered", "pending")]
    await conn.execute("UPDATE status_receipts SET next_try_at = now()")
    assert (await reconcile(conn)).applied == 1


async def test_several_reconcilers_at_once_apply_each_receipt_once(
    db_dsn: str, conn: asyncpg.Connection, contacts: Contacts
) -> None:
    rows: list[ReceiptRow] = []
    ids = []
    for i in range(300):
        contact_id, wamid = await contacts.add(S.SENT)
        assert wamid
        ids.append(contact_id)
        for status, offset in (("read", 9), ("delivered", 5), ("sent", 0), ("read", 9)):
            rows.append(receipt(wamid, status, T0 + timedelta(seconds=offset + i)))
    await store.store_receipts(conn, rows)

    async with open_pool(db_dsn, min_size=4, max_size=4) as pool:
        reconcilers = [Reconciler(pool, WebhookConfig(reconcile_batch=37)) for _ in range(4)]

        async def drain(reconciler: Reconciler) -> None:
            while await conn_pending(pool):
                await reconciler.reconcile_due()
                await asyncio.sleep(0)

        await asyncio.wait_for(asyncio.gather(*(drain(r) for r in reconcilers)), 30)

    counts = await store.receipt_counts(conn)
    assert set(counts) == {"applied", "duplicate"} and sum(counts.values()) == len(rows)
    # No status is applied twice to a contact: read once; delivered at most once (not at all
    # when the read came first in an earlier batch: it filled delivered_at itself).
    applied = await conn.fetch(
        "SELECT contact_id, status, count(*) AS n FROM status_receipts"
        " WHERE processing_state = 'applied' GROUP BY contact_id, status"
    )
    assert {r["n"] for r in applied} == {1}
    assert sum(1 for r in applied if r["status"] == "read") == len(ids)
    assert not [r for r in applied if r["status"] == "sent"]  # sent_at was already set
    states = await conn.fetch(
        "SELECT id, state::text, delivered_at, read_at FROM contacts ORDER BY id"
    )
    for i, row in enumerate(states):
        assert row["state"] == "read"
        assert row["read_at"] == T0 + timedelta(seconds=9 + i)
        assert row["delivered_at"] in (row["read_at"], T0 + timedelta(seconds=5 + i))


async def conn_pending(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        # Receipts skipped as busy wait a back-off; bring them forward so the test is quick.
        await conn.execute(
            "UPDATE status_receipts SET next_try_at = now() WHERE processing_state = 'pending'"
            " AND next_try_at > now()"
        )
        return bool(await store.pending_receipt_count(conn))


# -- the running loop ----------------------------------------------------------------------


async def test_the_reconciler_wakes_on_notify_from_stored_receipts(
    db_dsn: str, conn: asyncpg.Connection, contacts: Contacts
) -> None:
    contact_id, wamid = await contacts.add(S.SENT)
    assert wamid
    async with open_pool(db_dsn, min_size=1, max_size=2) as pool:
        # A sweep far away: only the NOTIFY can wake it within the test.
        reconciler = Reconciler(pool, WebhookConfig(), sweep_every_s=3600)
        listening = asyncio.Event()

        def woken() -> None:
            listening.set()
            reconciler.wake()

        tasks = [
            asyncio.create_task(reconciler.run()),
            asyncio.create_task(listen_for_receipts(db_dsn, woken)),
        ]
        try:
            await asyncio.wait_for(listening.wait(), 5)
            await asyncio.sleep(0.05)
            await store.store_receipts(conn, [receipt(wamid, "read")])
            await _until(lambda: contacts.row(contact_id), lambda r: r["state"] == "read")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert reconciler.stats.applied == 1


async def test_the_reconciler_outlives_a_database_outage() -> None:
    async with open_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0, max_size=1) as pool:
        reconciler = Reconciler(pool, WebhookConfig(), sweep_every_s=0.01)
        task = asyncio.create_task(reconciler.run())
        with capture_logs() as logs:
            await _until(lambda: asyncio.sleep(0, reconciler.stats.errors), lambda n: n >= 1)
            assert not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert any(e["event"] == "reconcile_failed" for e in logs)


async def _until(fetch: Any, ok: Any, timeout_s: float = 5.0) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            value = await fetch()
            if ok(value):
                return value
            await asyncio.sleep(0.02)


# -- the hot queries use their indexes -----------------------------------------------------


async def test_reconcile_uses_the_pending_index_and_matches_by_the_wamid_index(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone, state, wamid, attempts, sent_at)"
        " SELECT $1, '1777' || g, 'sent', 'wamid.E' || g, 1, now()"
        " FROM generate_series(1, 20000) g",
        contacts.campaign_id,
    )
    await conn.execute(
        "INSERT INTO status_receipts (wamid, status, raw, processing_state, processed_at)"
        " SELECT 'wamid.E' || g, 'sent', '{}', 'applied', now() FROM generate_series(1, 20000) g"
    )
    await conn.execute(
        "INSERT INTO status_receipts (wamid, status, raw, callback_data)"
        " SELECT 'wamid.E' || g, 'delivered', '{}', 'ws1:1:' || g || ':1'"
        " FROM generate_series(1, 500) g"
    )
    await conn.execute("ANALYZE contacts; ANALYZE status_receipts")
    due_plan = await _plan(conn, query("due_receipt_ids"), 1000)
    assert ("status_receipts", "status_receipts_pending") in _index_scans(due_plan)
    assert not _seq_scans(due_plan, {"status_receipts"})
    ids = [r["id"] for r in await conn.fetch(query("due_receipt_ids"), 1000)]
    assert len(ids) == 500
    args = (ids, [131050], store.SUPPRESS_REASON, 3600.0, 0.25, 0.5, 60.0)
    plan = await _plan(conn, query("reconcile_receipts"), *args)
    scans = _index_scans(plan)
    assert ("status_receipts", "status_receipts_pkey") in scans
    assert ("contacts", "contacts_wamid") in scans
    assert ("contacts", "contacts_pkey") in scans
    assert not _seq_scans(plan, {"contacts", "status_receipts"})

    wake_plan = await _plan(conn, query("wake_receipts_for_wamids"), ["wamid.E1"])
    assert not _seq_scans(wake_plan, {"status_receipts"})


async def test_a_backlog_after_analyze_with_nothing_pending_is_reconciled_in_linear_time(
    conn: asyncpg.Connection, contacts: Contacts
) -> None:
    """Statistics taken while nothing was pending made every CTE look like one row and their
    joins nested loops, quadratic in the batch: 1,000 receipts took 0.8 s, 4,000 took 9.6 s
    and 16,000 took 170 s (the backlog grew the batches). The batch's ids now come first."""
    batch = 3000
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone, state, wamid, attempts, sent_at)"
        " SELECT $1, '1888' || g, 'sent', 'wamid.Q' || g, 1, now()"
        " FROM generate_series(1, 20000) g",
        contacts.campaign_id,
    )
    await conn.execute(
        "INSERT INTO status_receipts (wamid, status, raw, processing_state, processed_at)"
        " SELECT 'wamid.Q' || g, 'sent', '{}', 'applied', now() FROM generate_series(1, 20000) g"
    )
    await conn.execute("ANALYZE contacts; ANALYZE status_receipts")
    # Then a backlog: sent, delivered and read of each contact, in one batch.
    await conn.execute(
        "INSERT INTO status_receipts (wamid, status, raw)"
        " SELECT 'wamid.Q' || (1 + g / 3), (ARRAY['sent', 'delivered', 'read'])[1 + g % 3], '{}'"
        " FROM generate_series(0, $1 - 1) g",
        batch,
    )
    ids = [r["id"] for r in await conn.fetch(query("due_receipt_ids"), batch)]
    args = (ids, [131050], store.SUPPRESS_REASON, 3600.0, 0.25, 0.5, 60.0)
    explained = conn.transaction()  # EXPLAIN ANALYZE runs the statement: rolled back after
    await explained.start()
    try:
        await conn.execute(query("custom_plans"))
        sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + query("reconcile_receipts")
        text = await conn.fetchval(sql, *args)
    finally:
        await explained.rollback()
    plan = (json.loads(text) if isinstance(text, str) else text)[0]["Plan"]
    filtered = sum(node.get("Rows Removed by Join Filter", 0) for node in _nodes(plan))
    assert filtered <= 2 * batch, filtered  # was ~millions (every receipt x every contact)
    result = await store.reconcile_batch(conn, batch, 3600.0)
    assert result.picked == batch
    assert result.contacts_changed == batch // 3
    read = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE wamid LIKE 'wamid.Q%' AND state = 'read'"
    )
    assert read == batch // 3


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> dict[str, Any]:
    text = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    plan: dict[str, Any] = (json.loads(text) if isinstance(text, str) else text)[0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _index_scans(plan: dict[str, Any]) -> set[tuple[str, str]]:
    """(table, index) of every index scan, bitmap ones included."""
    found = set()
    for node in _nodes(plan):
        if node["Node Type"] in ("Index Scan", "Index Only Scan"):
            found.add((node["Relation Name"], node["Index Name"]))
        elif node["Node Type"] == "Bitmap Heap Scan":
            found |= {
                (node["Relation Name"], child["Index Name"])
                for child in _nodes(node)
                if child["Node Type"] == "Bitmap Index Scan"
            }
    return found


def _seq_scans(plan: dict[str, Any], tables: set[str]) -> list[str]:
    return [
        n["Relation Name"]
        for n in _nodes(plan)
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in tables
    ]


@pytest.fixture(scope="module")
def receipt_samples() -> dict[str, bytes]:
    from pathlib import Path

    folder = Path(__file__).parent / "data" / "receipts"
    samples = {p.name: p.read_bytes() for p in sorted(folder.glob("status_*.json"))}
    change = json.loads(samples["status_change_sent_user_initiated_capture_ammarbay.json"])
    envelope = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    samples["status_change_sent_user_initiated_capture_ammarbay.json"] = json.dumps(
        envelope
    ).encode()
    return samples
