"""Contact import: every row lands once, as initial or as an invalid record with its reason."""

from __future__ import annotations

import codecs
from pathlib import Path

import asyncpg
import pytest

from daemon.core.payload import Template
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import (
    add_suppression,
    change_campaign_state,
    create_campaign,
    set_default_country,
)
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
            ("+16505551234", "Dup"),
            ("", "NoPhone"),
            ("abc123", "Letters"),
            ("+44 123", "Short"),
            ("+447911000001", ""),
            ("+447911000009", "Suppressed"),
            ("0044 7911 000002", "Bob"),
            ("07911 000003", "National"),
            ("+44 7700 900000", "Drama"),
        ],
        header=("Guest phone number", "first_name"),
    )
    result = await import_contacts(conn, campaign_id, path)
    assert (result.rows, result.imported, result.invalid) == (10, 2, 8)
    assert result.reasons == {
        "duplicate_phone": 1,
        "empty_phone": 1,
        "invalid_characters": 1,
        "invalid_length": 1,
        "invalid_number": 1,
        "missing_country_code": 1,
        "missing_parameter": 1,
        "suppressed": 1,
    }
    rows = await conn.fetch(
        "SELECT phone, params, region, time_zone FROM contacts WHERE state = 'initial' ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("16505551234", {"first_name": "Anna"}, "US", "America/Los_Angeles"),
        ("447911000002", {"first_name": "Bob"}, "GB", None),
    ]
    lines = await conn.fetch(
        "SELECT source_line, invalid_reason FROM contacts WHERE campaign_id = $1 ORDER BY id",
        campaign_id,
    )
    assert [r["source_line"] for r in lines] == list(range(2, 12))


async def test_default_country_reads_national_numbers(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = write_csv(
        tmp_path / "c.csv", [("602 123 456", "A"), ("0912 345 678", "B"), ("+421 912 345 679", "C")]
    )
    result = await import_contacts(conn, campaign_id, path, default_region="CZ")
    assert (result.imported, result.reasons) == (2, {"invalid_number": 1})
    rows = await conn.fetch("SELECT phone, region, time_zone FROM contacts WHERE state = 'initial'")
    assert sorted(tuple(r) for r in rows) == [
        ("420602123456", "CZ", "Europe/Prague"),
        ("421912345679", "SK", "Europe/Bratislava"),
    ]


async def test_campaign_default_country_wins_over_the_imports(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    await set_default_country(conn, campaign_id, "SK")
    path = write_csv(tmp_path / "c.csv", [("0912 345 678", "A")])
    result = await import_contacts(conn, campaign_id, path, default_region="CZ")
    assert result.imported == 1
    assert await conn.fetchval("SELECT phone FROM contacts") == "421912345678"


async def test_reimport_counts_rows_already_in_campaign_and_adds_nothing(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = write_csv(tmp_path / "c.csv", [("+447700000001", "A"), ("+447700000002", "B")])
    await import_contacts(conn, campaign_id, path)
    again = await import_contacts(conn, campaign_id, path)
    assert (again.rows, again.imported, again.invalid, again.already_in_campaign) == (2, 0, 0, 2)
    assert await conn.fetchval("SELECT count(*) FROM contacts") == 2
    more = write_csv(tmp_path / "m.csv", [("+447700000002", "B"), ("+447700000003", "C")])
    third = await import_contacts(conn, campaign_id, more)
    assert (third.imported, third.already_in_campaign, third.reasons) == (1, 1, {})


async def test_dry_run_counts_everything_and_writes_nothing(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    await import_contacts(
        conn, campaign_id, write_csv(tmp_path / "a.csv", [("+447700000001", "A")])
    )
    before = await _snapshot(conn)
    path = write_csv(
        tmp_path / "c.csv",
        [("+447700000001", "A"), ("+447700000002", "B"), ("+447700000002", "B"), ("x", "C")],
    )
    result = await import_contacts(conn, campaign_id, path, dry_run=True)
    assert result.dry_run
    assert (result.rows, result.imported, result.already_in_campaign) == (4, 1, 1)
    assert result.reasons == {"duplicate_phone": 1, "invalid_characters": 1}
    assert await _snapshot(conn) == before
    assert await conn.fetchval("SELECT to_regclass('import_rows')") is None


NAMES = ["Řehoř Žďárský", "Šárka Čechová", "Ďuro Ľubomír Ťažký"]


@pytest.mark.parametrize(
    ("encoding", "given"),
    [
        ("utf-8", None),
        ("utf-8-sig", None),  # UTF-8 with a BOM
        ("utf-16", None),  # the BOM of the machine's byte order
        ("utf-16-le-bom", None),
        ("utf-16-be-bom", None),
        ("cp1250", "cp1250"),
        ("iso8859-2", "latin2"),
    ],
)
async def test_encodings_keep_czech_names_intact(
    conn: asyncpg.Connection, tmp_path: Path, encoding: str, given: str | None
) -> None:
    campaign_id = await _campaign(conn)
    text = "phone;first_name\r\n" + "".join(
        f"+42060212345{i};{name}\r\n" for i, name in enumerate(NAMES)
    )
    if encoding.endswith("-bom"):
        codec = encoding.removesuffix("-bom")
        data = (codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE) + text.encode(
            codec
        )
    else:
        data = text.encode(encoding)
    path = tmp_path / "c.csv"
    path.write_bytes(data)
    result = await import_contacts(conn, campaign_id, path, encoding=given)
    assert (result.imported, result.invalid) == (3, 0)
    names = await conn.fetch("SELECT params->>'first_name' AS n FROM contacts ORDER BY id")
    assert [r["n"] for r in names] == NAMES


async def test_latin1_file_with_its_encoding(conn: asyncpg.Connection, tmp_path: Path) -> None:
    campaign_id = await _campaign(conn)
    path = tmp_path / "c.csv"
    path.write_bytes("phone,first_name\n+447700000001,René Müller\n".encode("latin-1"))
    result = await import_contacts(conn, campaign_id, path, encoding="latin-1")
    assert result.imported == 1
    assert await conn.fetchval("SELECT params->>'first_name' FROM contacts") == "René Müller"


async def test_wrong_encoding_names_offset_line_and_option(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = tmp_path / "c.csv"
    head = b"phone,first_name\n+447700000001,Anna\n"
    path.write_bytes(head + "+447700000002,Šárka\n".encode("cp1250"))
    with pytest.raises(ImportFileError) as refused:
        await import_contacts(conn, campaign_id, path)
    message = str(refused.value)
    assert f"offset {len(head) + 14} (line 3)" in message
    assert "--encoding" in message and "\n" not in message
    assert await _snapshot(conn) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a CSV file"),
        (b"phone,first_name\n+447700000001,Ren\xe9\n", "not utf-8 text"),
        (b"PK\x03\x04\x14\x00", "Excel workbook"),
        (b"name,first_name\nx,y\n", "no phone column"),
        (b"phone\n+447700000001\n", "missing template parameter column(s): first_name"),
        (b"", "empty file"),
    ],
)
async def test_bad_file_is_one_clear_error_and_changes_nothing(
    conn: asyncpg.Connection, tmp_path: Path, content: bytes, message: str
) -> None:
    campaign_id = await _campaign(conn)
    await import_contacts(
        conn, campaign_id, write_csv(tmp_path / "ok.csv", [("+447700000001", "A")])
    )
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
    path = write_csv(tmp_path / "c.csv", [("+447700000001", "A")])
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
    path.write_text("PHONE;First_Name\n+447700000001;A\n+447700000002;B\n", encoding="utf-8")
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


async def test_a_nul_in_a_cell_makes_that_row_invalid_with_its_line(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await _campaign(conn)
    path = tmp_path / "c.csv"
    path.write_bytes(b"phone,first_name\n+447700000001,A\n+447700000002,B\x00b\n+447700000003,C\n")
    result = await import_contacts(conn, campaign_id, path)
    assert (result.imported, result.reasons) == (2, {"nul_character": 1})
    bad = await conn.fetchrow(
        "SELECT source_line, params->>'first_name' AS name FROM contacts"
        " WHERE state = 'invalid_record'"
    )
    assert (bad["source_line"], bad["name"]) == (3, "B\ufffdb")
