"""Contact import: every row lands once, as initial or as an invalid record with its reason."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from daemon.core.payload import Template
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import add_suppression, change_campaign_state, create_campaign
from daemon.db.importer import import_contacts
from daemon.errors import ImportFileError, TransitionError
from tests.helpers.data import write_csv


async def _campaign(conn: asyncpg.Connection, params: tuple[str, ...] = ("first_name",)) -> int:
    return await create_campaign(conn, "c", Template("t", "en_US", params), "1000001")


async def _snapshot(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT campaign_id, phone, state::text, invalid_reason FROM contacts ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def test_each_row_becomes_initial_or_invalid_with_reason(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    await add_suppression(conn, "447911000009", "opt-out")
    path = write_csv(
        tmp_path / "c.csv",
        [
            ("+1 650 555 1234", "Anna"),
            ("16505551234", "Dup"),
            ("", "NoPhone"),
            ("abc123", "Letters"),
            ("123", "Short"),
            ("447911000001", ""),
            ("447911000009", "Suppressed"),
            ("0044 7911 000002", "Bob"),
        ],
        header=("Guest phone number", "first_name"),
    )
    result = await import_contacts(conn, campaign_id, path)
    assert (result.rows, result.imported, result.invalid) == (8, 2, 6)
    assert result.reasons == {
        "duplicate_phone": 1,
        "empty_phone": 1,
        "invalid_characters": 1,
        "invalid_length": 1,
        "missing_parameter": 1,
        "suppressed": 1,
    }
    rows = await conn.fetch(
        "SELECT phone, state::text AS state, params FROM contacts WHERE state = 'initial' ORDER BY id"
    )
    assert [(r["phone"], r["params"]) for r in rows] == [
        ("16505551234", {"first_name": "Anna"}),
        ("447911000002", {"first_name": "Bob"}),
    ]


async def test_reimport_marks_existing_phones_duplicate(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = write_csv(tmp_path / "c.csv", [("15550000001", "A"), ("15550000002", "B")])
    await import_contacts(conn, campaign_id, path)
    again = await import_contacts(conn, campaign_id, path)
    assert (again.imported, again.invalid, again.reasons) == (0, 2, {"duplicate_phone": 2})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a CSV file"),
        (b"phone,first_name\n15550000001,Ren\xe9\n", "not UTF-8"),
        (b"name,first_name\nx,y\n", "no phone column"),
        (b"phone\n15550000001\n", "missing template parameter column(s): first_name"),
        (b"", "empty file"),
    ],
)
async def test_bad_file_is_one_clear_error_and_changes_nothing(
    conn: asyncpg.Connection, tmp_path: Path, content: bytes, message: str
) -> None:
    campaign_id = await _campaign(conn)
    await import_contacts(conn, campaign_id, write_csv(tmp_path / "ok.csv", [("15550000001", "A")]))
    before = await _snapshot(conn)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await import_contacts(conn, campaign_id, bad)
    assert await _snapshot(conn) == before


async def test_import_refused_unless_draft_or_paused(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = write_csv(tmp_path / "c.csv", [("15550000001", "A")])
    await change_campaign_state(conn, campaign_id, CampaignCommand.START)
    with pytest.raises(TransitionError, match="only while it is draft or paused"):
        await import_contacts(conn, campaign_id, path)
    await change_campaign_state(conn, campaign_id, CampaignCommand.PAUSE)
    assert (await import_contacts(conn, campaign_id, path)).imported == 1


async def test_semicolon_csv_and_case_insensitive_headers(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = tmp_path / "c.csv"
    path.write_text("PHONE;First_Name\n15550000001;A\n15550000002;B\n", encoding="utf-8")
    result = await import_contacts(conn, campaign_id, path)
    assert (result.imported, result.invalid) == (2, 0)


async def test_database_enforces_state_values(conn: asyncpg.Connection) -> None:
    campaign_id = await _campaign(conn)
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await conn.execute(
            "INSERT INTO contacts (campaign_id, phone, state) VALUES ($1, '1', 'bogus')",
            campaign_id,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO contacts (campaign_id, phone, state) VALUES ($1, '1', 'invalid_record')",
            campaign_id,
        )
    labels = await conn.fetchval(
        "SELECT array_agg(e::text ORDER BY e) FROM unnest(enum_range(NULL::contact_state)) e"
    )
    from daemon.core.states import ContactState

    assert labels == [s.value for s in ContactState]
