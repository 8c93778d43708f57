"""GDPR: `gdpr purge` anonymises old campaigns, `gdpr forget` removes one person everywhere.

After each, every text and JSON column of every table is searched for the affected phone
numbers, wa_ids and wamids (a wamid encodes the recipient's number): none may be left, except
the one suppression-list row that `forget` adds to block the number for good.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from daemon.cli import main
from daemon.mockapi.state import WamidFactory
from daemon.ops.gdpr import ForgetResult, PurgeResult, forget, purge
from daemon.ops.reports import run_report

NOW = datetime.now(UTC)
WAMIDS = WamidFactory(instance=7)
_seq = iter(range(1, 1_000_000))


async def text_columns(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """
        SELECT c.table_name, c.column_name
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
               OR c.udt_name IN ('_text', '_varchar', '_bpchar', '_json', '_jsonb'))
        ORDER BY 1, 2
        """
    )
    return [(r["table_name"], r["column_name"]) for r in rows]


async def find_everywhere(
    conn: asyncpg.Connection, needles: set[str]
) -> list[tuple[str, str, str, str]]:
    """(table, column, needle, value) for every cell of every text/json column containing one
    of `needles`."""
    hits = []
    for table, column in await text_columns(conn):
        for needle in sorted(needles):
            rows = await conn.fetch(
                f'SELECT "{column}"::text AS v FROM "{table}" WHERE strpos("{column}"::text, $1) > 0',
                needle,
            )
            hits += [(table, column, needle, r["v"]) for r in rows]
    return hits


async def test_the_search_sees_every_table(conn: asyncpg.Connection) -> None:
    columns = set(await text_columns(conn))
    for expected in [
        ("contacts", "phone"),
        ("contacts", "wa_id"),
        ("contacts", "wamid"),
        ("contacts", "params"),
        ("status_receipts", "raw"),
        ("status_receipts", "recipient_id"),
        ("suppressions", "phone"),
        ("recipient_window", "phone"),
        ("campaigns", "template_params"),
    ]:
        assert expected in columns


async def campaign(
    conn: asyncpg.Connection, name: str, state: str, ended_days_ago: float | None = None
) -> int:
    ended = NOW - timedelta(days=ended_days_ago) if ended_days_ago is not None else None
    return int(
        await conn.fetchval(
            "INSERT INTO campaigns (name, template_name, template_language, template_params,"
            " phone_number_id, state, started_at, finished_at, canceled_at)"
            " VALUES ($1, 'promo', 'en_US', '{first_name}', '1000001', $2, $3, $4, $5)"
            " RETURNING id",
            name,
            state,
            NOW - timedelta(days=60),
            ended if state == "finished" else None,
            ended if state == "canceled" else None,
        )
    )


class Person:
    """One recipient; wa_id differs from the phone as for Brazilian mobiles."""

    def __init__(self, phone: str, wa_id: str | None = None) -> None:
        self.phone = phone
        self.wa_id = wa_id or phone
        self.wamids: list[str] = []

    @property
    def identifiers(self) -> set[str]:
        return {self.phone, self.wa_id, *self.wamids}


async def contact(
    conn: asyncpg.Connection,
    campaign_id: int,
    person: Person,
    state: str,
    *,
    raw_phone: str | None = None,
    receipts: tuple[str, ...] = (),
) -> int:
    """A contact as the sender and reconciler leave it, with its status receipts."""
    sent = state in ("sent", "delivered", "read", "delivery_failed")
    wamid = WAMIDS.make(person.wa_id, next(_seq)) if sent else None
    if wamid:
        person.wamids.append(wamid)
    contact_id = int(
        await conn.fetchval(
            "INSERT INTO contacts (campaign_id, phone, wa_id, params, state, attempts, wamid,"
            " error_code, error_title, invalid_reason, sent_at, delivered_at, read_at, failed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
            campaign_id,
            raw_phone or person.phone,
            person.wa_id if sent else None,
            {"first_name": f"Name of {person.phone}"},
            state,
            1 if state not in ("initial", "invalid_record") else 0,
            wamid,
            131049 if state == "delivery_failed" else None,
            "Healthy ecosystem engagement" if state == "delivery_failed" else None,
            "duplicate_phone" if state == "invalid_record" else None,
            NOW - timedelta(days=50) if sent else None,
            NOW - timedelta(days=50) if state in ("delivered", "read") else None,
            NOW - timedelta(days=49) if state == "read" else None,
            NOW - timedelta(days=50) if state == "delivery_failed" else None,
        )
    )
    for status in receipts:
        await receipt(conn, person, status, wamid=wamid, contact_id=contact_id)
    return contact_id


async def receipt(
    conn: asyncpg.Connection,
    person: Person,
    status: str,
    *,
    wamid: str | None,
    contact_id: int | None,
    processing_state: str = "applied",
    received_days_ago: float = 50,
    recipient_column: bool = True,
) -> None:
    if wamid is None:
        wamid = WAMIDS.make(person.wa_id, next(_seq))
        person.wamids.append(wamid)
    raw = {
        "id": wamid,
        "status": status,
        "timestamp": "1700000000",
        "recipient_id": person.wa_id,
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1000001"},
    }
    await conn.execute(
        "INSERT INTO status_receipts (received_at, wamid, status, recipient_id, phone_number_id,"
        " raw, processing_state, contact_id, processed_at)"
        " VALUES ($1, $2, $3, $4, '1000001', $5, $6, $7, $1)",
        NOW - timedelta(days=received_days_ago),
        wamid,
        status,
        person.wa_id if recipient_column else None,
        raw,
        processing_state,
        contact_id,
    )


async def window_entry(conn: asyncpg.Connection, phone: str) -> None:
    await conn.execute(
        "INSERT INTO recipient_window (phone, last_sent_at) VALUES ($1, now() - interval '2 hours')",
        phone,
    )


async def state_counts(conn: asyncpg.Connection) -> dict[tuple[int, str], int]:
    rows = await conn.fetch(
        "SELECT campaign_id, state::text AS state, count(*) AS n FROM contacts GROUP BY 1, 2"
    )
    return {(r["campaign_id"], r["state"]): r["n"] for r in rows}


async def facts(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """What reports rely on: everything of contacts and receipts but the identifying columns."""
    contacts = await conn.fetch(
        "SELECT id, campaign_id, state::text, attempts, error_code, error_title, invalid_reason,"
        " sent_at, delivered_at, read_at, failed_at, removed_at FROM contacts ORDER BY id"
    )
    receipts = await conn.fetch(
        "SELECT id, status, status_at, error_code, processing_state, contact_id, received_at"
        " FROM status_receipts ORDER BY id"
    )
    return [tuple(r) for r in [*contacts, *receipts]]


async def _cli(monkeypatch: pytest.MonkeyPatch, dsn: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", dsn)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    code = await asyncio.to_thread(main, list(args))
    return code, out.getvalue(), err.getvalue()


# -- purge ------------------------------------------------------------------------------------


async def test_purge_anonymises_old_campaigns_only(
    conn: asyncpg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await campaign(conn, "old finished", "finished", ended_days_ago=40)
    old_canceled = await campaign(conn, "old canceled", "canceled", ended_days_ago=31)
    recent = await campaign(conn, "recent", "finished", ended_days_ago=5)
    running = await campaign(conn, "running", "running")

    gone = [Person(f"4477009000{i:02d}") for i in range(5)]
    gone.append(Person("5511987650001", wa_id="551187650001"))
    kept = [Person(f"3361234000{i:02d}") for i in range(4)]
    await contact(conn, old, gone[0], "read", receipts=("sent", "delivered", "read"))
    await contact(conn, old, gone[1], "delivery_failed", receipts=("sent", "failed"))
    await contact(conn, old, gone[2], "sending_failed")
    await contact(conn, old, gone[2], "invalid_record", raw_phone="+44 7700 900002")
    await contact(conn, old, gone[5], "delivered", receipts=("delivered",))
    await contact(conn, old_canceled, gone[3], "canceled_by_admin")
    await contact(conn, old_canceled, gone[4], "sent")
    # A duplicate status stored after its contact lost track of it: linked by wamid only.
    await receipt(conn, gone[4], "sent", wamid=gone[4].wamids[0], contact_id=None)
    await window_entry(conn, gone[5].wa_id)
    orphan_old, orphan_new = Person("4477009000777"), Person("3361234000777")
    await receipt(conn, orphan_old, "read", wamid=None, contact_id=None, processing_state="orphan")
    await receipt(
        conn,
        orphan_new,
        "read",
        wamid=None,
        contact_id=None,
        processing_state="orphan",
        received_days_ago=2,
    )
    await contact(conn, recent, kept[0], "read", receipts=("read",))
    await contact(conn, recent, kept[1], "sending_failed")
    await contact(conn, running, kept[2], "initial")
    await contact(conn, running, kept[3], "delivered", receipts=("delivered",))
    await window_entry(conn, kept[3].phone)

    affected = set().union(*(p.identifiers for p in [*gone, orphan_old]))
    untouched = set().union(*(p.identifiers for p in [*kept, orphan_new]))
    assert await find_everywhere(conn, affected)  # the search finds them before
    counts, before = await state_counts(conn), await facts(conn)
    summary = (await run_report(conn, "campaign_summary")).rows
    window_size = await conn.fetchval("SELECT count(*) FROM recipient_window")

    code, out, err = await _cli(monkeypatch, db_dsn, "gdpr", "purge", "--older-than", "30")
    assert (code, err) == (0, "")
    assert out.startswith("anonymised 7 contacts in 2 campaigns finished or canceled more than 30")
    assert "scrubbed 8 status receipts and 1 messaging-limit entries" in out

    assert await find_everywhere(conn, affected) == []
    found = {needle for _, _, needle, _ in await find_everywhere(conn, untouched)}
    assert found == untouched
    assert await state_counts(conn) == counts
    assert await facts(conn) == before  # states, timestamps, error codes, links: all kept
    assert (await run_report(conn, "campaign_summary")).rows == summary
    assert await conn.fetchval("SELECT count(*) FROM recipient_window") == window_size
    phones = await conn.fetch(
        "SELECT id, phone, wa_id, wamid, params FROM contacts WHERE campaign_id = ANY($1)",
        [old, old_canceled],
    )
    assert all(
        (r["phone"], r["wa_id"], r["wamid"], r["params"]) == (f"anon:{r['id']}", None, None, {})
        for r in phones
    )

    code, out, _ = await _cli(monkeypatch, db_dsn, "gdpr", "purge", "--older-than", "30")
    assert code == 0
    assert out.startswith("anonymised 0 contacts in 0 campaigns")
    assert "scrubbed 0 status receipts and 0 messaging-limit entries" in out


async def test_purge_again_changes_nothing(conn: asyncpg.Connection) -> None:
    old = await campaign(conn, "old", "finished", ended_days_ago=10)
    await contact(conn, old, Person("4477009000001"), "read", receipts=("read",))
    assert await purge(conn, 7) == PurgeResult(
        campaigns=1, contacts=1, receipts=1, window_entries=0
    )
    snapshot = await conn.fetch("SELECT * FROM contacts ORDER BY id")
    receipts = await conn.fetch("SELECT * FROM status_receipts ORDER BY id")
    assert await purge(conn, 7) == PurgeResult(0, 0, 0, 0)
    assert await conn.fetch("SELECT * FROM contacts ORDER BY id") == snapshot
    assert await conn.fetch("SELECT * FROM status_receipts ORDER BY id") == receipts
    assert await purge(conn, 11) == PurgeResult(0, 0, 0, 0)


# -- forget -----------------------------------------------------------------------------------


async def test_forget_removes_one_person_everywhere_but_the_suppression_list(
    conn: asyncpg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = await campaign(conn, "finished", "finished", ended_days_ago=3)
    running = await campaign(conn, "running", "running")
    paused = await campaign(conn, "paused", "paused")
    draft = await campaign(conn, "draft", "draft")

    x = Person("5511987654321", wa_id="551187654321")
    others = [Person(f"5511987650{i:03d}") for i in range(4)]
    await contact(conn, finished, x, "read", receipts=("sent", "delivered", "read"))
    await contact(conn, finished, others[0], "read", receipts=("read",))
    await contact(conn, running, x, "retry_scheduled")
    await contact(conn, running, others[1], "initial")
    await contact(conn, paused, x, "delivery_failed", receipts=("failed",))
    await contact(conn, paused, x, "invalid_record", raw_phone="+55 (11) 98765-4321")
    await contact(conn, paused, others[2], "sent")
    await contact(conn, draft, x, "initial")
    await contact(conn, draft, others[3], "initial")
    await receipt(conn, x, "read", wamid=None, contact_id=None, processing_state="orphan")
    # The phone only inside a raw payload (the recipient column left empty).
    await receipt(
        conn,
        x,
        "delivered",
        wamid=None,
        contact_id=None,
        processing_state="pending",
        recipient_column=False,
    )
    await window_entry(conn, x.wa_id)
    await window_entry(conn, others[0].phone)
    totals = {k: v for k, v in (await state_counts(conn)).items()}
    window_size = await conn.fetchval("SELECT count(*) FROM recipient_window")

    code, out, err = await _cli(monkeypatch, db_dsn, "gdpr", "forget", "+55 11 98765-4321")
    assert (code, err) == (0, "")
    assert out == (
        "anonymised 5 contacts (2 not yet sent, now removed); scrubbed 6 status receipts and "
        "1 messaging-limit entries; number added to the suppression list (reason 'gdpr forget')\n"
    )

    hits = await find_everywhere(conn, x.identifiers)
    # Blocking future sends needs the number itself: this one row keeps it, on purpose.
    assert hits == [("suppressions", "phone", x.phone, x.phone)]
    assert await conn.fetchval("SELECT reason FROM suppressions WHERE phone = $1", x.phone) == (
        "gdpr forget"
    )
    others_ids = set().union(*(p.identifiers for p in others))
    assert {n for _, _, n, _ in await find_everywhere(conn, others_ids)} == others_ids

    expected = dict(totals)
    for campaign_id, state in ((running, "retry_scheduled"), (draft, "initial")):
        expected[(campaign_id, state)] -= 1
        expected[(campaign_id, "removed")] = expected.get((campaign_id, "removed"), 0) + 1
    assert {k: v for k, v in (await state_counts(conn)).items() if v} == {
        k: v for k, v in expected.items() if v
    }
    assert await conn.fetchval("SELECT count(*) FROM recipient_window") == window_size

    code, out, _ = await _cli(monkeypatch, db_dsn, "gdpr", "forget", "+5511987654321")
    assert code == 0
    assert out == (
        "anonymised 0 contacts (0 not yet sent, now removed); scrubbed 0 status receipts and "
        "0 messaging-limit entries; number already on the suppression list\n"
    )


async def test_forget_keeps_an_existing_suppression_reason(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO suppressions (phone, reason) VALUES ('4477009000001', 'opt-out')"
    )
    result = await forget(conn, "4477009000001")
    assert result == ForgetResult(0, 0, 0, 0, suppression_added=False)
    assert await conn.fetchval("SELECT reason FROM suppressions") == "opt-out"


@pytest.mark.parametrize(
    ("raw", "reason"), [("12ab", "invalid_characters"), ("+1", "invalid_length")]
)
async def test_forget_rejects_an_invalid_phone_in_one_line(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch, raw: str, reason: str
) -> None:
    code, out, err = await _cli(monkeypatch, db_dsn, "gdpr", "forget", raw)
    assert (code, out) == (1, "")
    assert err == f"wa-sender: error: invalid phone {raw!r}: {reason}\n"
