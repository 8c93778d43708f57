"""Importing contacts for a template campaign: each row becomes a contact, `initial` or an
`invalid_record` with the reason its values do not fit the template; per-contact languages
kept, or fallen back to the campaign's and counted."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.core.payload import Template
from daemon.core.template_spec import TemplateSource, bind_template
from daemon.core.templates import parse_template
from daemon.db.campaigns import create_campaign
from daemon.db.importer import import_contacts
from daemon.errors import ImportFileError
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES
from tests.core.test_template_check import GOOD_RICH, REASONS, RICH
from tests.test_cli import wa


def definition(name: str, language: str = "en_US") -> Any:
    return parse_template(
        next(d for d in SAMPLE_TEMPLATES if d["name"] == name and d["language"] == language)
    )


async def campaign(conn: asyncpg.Connection, name: str, **kwargs: Any) -> int:
    others = kwargs.pop("others", [])
    spec = bind_template(definition(name), others=others, source=TemplateSource.CATALOGUE, **kwargs)
    return await create_campaign(conn, name, Template(name, "en_US"), "1000001", spec=spec)


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


async def test_each_validation_reason_makes_its_row_an_invalid_record(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign(conn, "sample_rich_named", **RICH)
    columns = list(GOOD_RICH)
    rows = [
        [f"+44770010{i:04d}", *({**GOOD_RICH, **change}[c] for c in columns)]
        for i, (_, _, change) in enumerate(REASONS)
    ]
    rows.append(["+447700109999", *(GOOD_RICH[c] for c in columns)])  # one good row
    result = await import_contacts(conn, cid, write(tmp_path / "c.csv", ["phone", *columns], rows))
    assert (result.rows, result.imported, result.invalid) == (len(REASONS) + 1, 1, len(REASONS))
    stored = await conn.fetch(
        "SELECT source_line, state::text, invalid_reason, params FROM contacts"
        " WHERE campaign_id = $1 ORDER BY source_line",
        cid,
    )
    assert len(stored) == len(REASONS) + 1  # nothing lost
    for record, (reason, _, change) in zip(stored, REASONS, strict=False):
        assert (record["state"], record["invalid_reason"]) == ("invalid_record", reason)
        assert record["params"][next(iter(change))] == next(iter(change.values()))
    assert stored[-1]["state"] == "initial" and stored[-1]["invalid_reason"] is None
    assert stored[-1]["params"]["body.worth.amount_1000"] == "12500"


@pytest.mark.parametrize(("reason", "name", "change"), REASONS, ids=[r[0] for r in REASONS])
async def test_one_row_per_reason(
    conn: asyncpg.Connection, tmp_path: Path, reason: str, name: str, change: dict[str, str]
) -> None:
    cid = await campaign(conn, name, **RICH)
    row = {**GOOD_RICH, **change}
    path = write(tmp_path / "c.csv", ["phone", *row], [["+447700100001", *row.values()]])
    result = await import_contacts(conn, cid, path)
    assert result.reasons == {reason: 1}
    assert (
        await conn.fetchval("SELECT invalid_reason FROM contacts WHERE campaign_id = $1", cid)
        == reason
    )


async def test_languages_the_template_lacks_fall_back_and_are_counted(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign(
        conn, "sample_header_text", others=[definition("sample_header_text", "de_DE")]
    )
    rows = [
        ["+447700100001", "Summer", "Anna", "en_US"],
        ["+447700100002", "Sommer", "Berta", "de_DE"],
        ["+447700100003", "Été", "Chloé", "fr_FR"],
        ["+447700100004", "Verano", "Diego", "es_ES"],
        ["+447700100005", "Summer", "Eve", ""],
    ]
    path = write(tmp_path / "c.csv", ["phone", "header.text", "body.1", "language"], rows)
    result = await import_contacts(conn, cid, path)
    assert (result.imported, result.notes) == (5, {"language_fallback": 2})
    languages = [
        r["language"]
        for r in await conn.fetch(
            "SELECT params ->> 'language' AS language FROM contacts WHERE campaign_id = $1"
            " ORDER BY id",
            cid,
        )
    ]
    assert languages == [None, "de_DE", None, None, None]


async def test_contacts_import_shows_the_fallbacks_and_the_reasons(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign(
        conn, "sample_header_text", others=[definition("sample_header_text", "de_DE")]
    )
    header = ["phone", "header.text", "body.1", "language"]
    first = write(
        tmp_path / "a.csv",
        header,
        [
            ["+447700100001", "Summer", "Anna", "de_DE"],
            ["+447700100002", "Été", "Chloé", "fr_FR"],
            ["+447700100003", "Summer", "Two\nlines", "en_US"],
        ],
    )
    shown = await asyncio.to_thread(wa, db_dsn, "contacts", "import", str(cid), str(first))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "imported 2, invalid 1 (of 3 rows)",
        "  invalid_parameter_text: 1",
        "  language_fallback: 1 contact(s) in a language the template lacks get the campaign's",
    ]
    second = write(tmp_path / "b.csv", header, [["+447700100004", "Verano", "Diego", "es_ES"]])
    as_json = await asyncio.to_thread(
        wa, db_dsn, "contacts", "import", str(cid), str(second), "--json"
    )
    assert json.loads(as_json.stdout) == {
        "campaign_id": cid,
        "rows": 1,
        "imported": 1,
        "invalid": 0,
        "reasons": {},
        "notes": {"language_fallback": 1},
    }


async def test_a_missing_required_column_refuses_the_file(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign(conn, "sample_url_button")
    path = write(tmp_path / "c.csv", ["phone", "body.1"], [["+447700100001", "Anna"]])
    with pytest.raises(
        ImportFileError,
        match=r"missing template parameter column\(s\): "
        r"button\.0\.url_suffix",
    ):
        await import_contacts(conn, cid, path)
    assert await conn.fetchval("SELECT count(*) FROM contacts") == 0


async def test_constants_need_no_column_and_optional_columns_may_be_absent(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign(conn, "sample_quick_reply", sets={"body.1": "everyone"})
    path = write(tmp_path / "c.csv", ["phone"], [["+447700100001"], ["+447700100002"]])
    result = await import_contacts(conn, cid, path)
    assert (result.imported, result.invalid) == (2, 0)


# Reasons the rich template cannot show: a TEXT header's limit and a location header's numbers.
HEADER_REASONS = [
    ("parameter_too_long", "sample_header_text_named", {"header.text": "x" * 61}),
    ("invalid_parameter_text", "sample_header_text_named", {"header.text": "a\tb"}),
    ("invalid_location", "sample_location_named", {"header.location.latitude": "north"}),
    ("invalid_location", "sample_location_named", {"header.location.longitude": "181"}),
]
HEADER_GOOD = {
    "sample_header_text_named": {"header.text": "x" * 60, "body.first_name": "Anna"},
    "sample_location_named": {
        "header.location.latitude": "-90",
        "header.location.longitude": "180",
        "body.first_name": "Anna",
    },
}


@pytest.mark.parametrize(
    ("reason", "name", "change"), HEADER_REASONS, ids=[f"{r[1]}-{r[0]}" for r in HEADER_REASONS]
)
async def test_header_values_are_checked_at_import_too(
    conn: asyncpg.Connection, tmp_path: Path, reason: str, name: str, change: dict[str, str]
) -> None:
    cid = await campaign(conn, name)
    good = HEADER_GOOD[name]
    bad = {**good, **change}
    path = write(
        tmp_path / "c.csv",
        ["phone", *good],
        [["+447700100001", *good.values()], ["+447700100002", *bad.values()]],
    )
    result = await import_contacts(conn, cid, path)
    assert (result.imported, result.reasons) == (1, {reason: 1})
    stored = await conn.fetch(
        "SELECT state::text, invalid_reason, params FROM contacts WHERE campaign_id = $1"
        " ORDER BY source_line",
        cid,
    )
    assert [(r["state"], r["invalid_reason"]) for r in stored] == [
        ("initial", None),
        ("invalid_record", reason),
    ]
    assert stored[1]["params"] == bad  # the row as it was: nothing lost
