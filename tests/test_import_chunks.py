"""The import in chunks (issue 22): a file applied a few rows at a time gives exactly what it
gives in one chunk, row by row: duplicates across chunks, phones live before the import,
suppressed phones written twice, invalid rows, file order; and an error in a later chunk
still changes nothing."""

from __future__ import annotations

import random
from pathlib import Path

import asyncpg
import pytest

from daemon.core.payload import Template
from daemon.db import importer
from daemon.db.campaigns import add_suppression, create_campaign
from daemon.db.importer import import_contacts
from daemon.errors import ImportFileError
from tests.helpers.data import phone, write_csv


def _messy_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.1:
            rows.append((rng.choice(["", "x12", "+44 12"]), f"Bad{i}"))
        elif kind < 0.15:
            rows.append(("+" + phone(rng.randrange(40)), ""))  # missing parameter
        else:  # a small pool of phones: many duplicates, near and far apart
            rows.append(("+" + phone(rng.randrange(60)), f"Name{i}"))
    return rows


async def _contacts(conn: asyncpg.Connection, campaign_id: int) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT phone, state::text, invalid_reason, source_line, params::text FROM contacts"
        " WHERE campaign_id = $1 ORDER BY id",
        campaign_id,
    )
    return [tuple(r) for r in rows]


async def _import_twice(
    conn: asyncpg.Connection,
    tmp_path: Path,
    chunk: int,
    seed: int,
    dry_run: bool = False,
    worker: bool = False,
) -> tuple[importer.ImportResult, list[tuple[object, ...]]]:
    """A campaign with some live phones, then the messy file, in chunks of `chunk` rows
    (parsed by the worker process when `worker`)."""
    campaign_id = await create_campaign(
        conn, f"c{chunk}", Template("t", "en_US", ("first_name",)), "1000001"
    )
    before = write_csv(tmp_path / f"before{chunk}.csv", [("+" + phone(i), "Old") for i in range(5)])
    await import_contacts(conn, campaign_id, before)
    path = write_csv(tmp_path / f"c{chunk}.csv", _messy_rows(400, seed))
    old = importer.CHUNK_ROWS, importer.WORKER_MIN_BYTES
    importer.CHUNK_ROWS = chunk
    importer.WORKER_MIN_BYTES = 0 if worker else 1 << 40
    try:
        result = await import_contacts(conn, campaign_id, path, dry_run=dry_run)
    finally:
        importer.CHUNK_ROWS, importer.WORKER_MIN_BYTES = old
    return result, await _contacts(conn, campaign_id)


@pytest.mark.parametrize(("seed", "worker"), [(1, False), (2, False), (3, True)])
async def test_chunks_give_what_one_chunk_gives_row_by_row(
    conn: asyncpg.Connection, tmp_path: Path, seed: int, worker: bool
) -> None:
    for i in (7, 13, 50):  # suppressed phones, some of them written more than once
        await add_suppression(conn, phone(i), "opt-out")
    whole, whole_rows = await _import_twice(conn, tmp_path, 100_000, seed)
    for chunk in (1, 7, 64):
        result, rows = await _import_twice(conn, tmp_path, chunk, seed, worker=worker)
        assert (result.rows, result.imported, result.invalid) == (
            whole.rows,
            whole.imported,
            whole.invalid,
        )
        assert (result.reasons, result.already_in_campaign) == (
            whole.reasons,
            whole.already_in_campaign,
        )
        assert rows == whole_rows
        dry, unchanged = await _import_twice(
            conn, tmp_path, chunk, seed, dry_run=True, worker=worker
        )
        assert (dry.imported, dry.reasons, dry.already_in_campaign) == (
            whole.imported,
            whole.reasons,
            whole.already_in_campaign,
        )
        assert len(unchanged) == 5  # only the live ones from before
    # What the fixture's file holds, so that the comparison means something.
    assert whole.already_in_campaign > 0 and whole.reasons["duplicate_phone"] > 100
    assert whole.reasons["suppressed"] >= 1 and whole.reasons["missing_parameter"] > 0
    assert [r[3] for r in whole_rows[5:]] == sorted(r[3] for r in whole_rows[5:])


@pytest.mark.parametrize("worker", [False, True])
async def test_an_error_in_a_later_chunk_changes_nothing(
    conn: asyncpg.Connection, tmp_path: Path, worker: bool
) -> None:
    campaign_id = await create_campaign(
        conn, "c", Template("t", "en_US", ("first_name",)), "1000001"
    )
    path = tmp_path / "bad.csv"
    good = "".join(f"+{phone(i)},N{i}\n" for i in range(50))
    path.write_bytes(("phone,first_name\n" + good).encode() + b"+447700000999,\xff\xfe\n")
    old = importer.CHUNK_ROWS, importer.WORKER_MIN_BYTES
    importer.CHUNK_ROWS = 10
    importer.WORKER_MIN_BYTES = 0 if worker else 1 << 40
    try:
        with pytest.raises(ImportFileError, match="line 52"):
            await import_contacts(conn, campaign_id, path)
    finally:
        importer.CHUNK_ROWS, importer.WORKER_MIN_BYTES = old
    assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
    # The connection is usable: no statement of the failed import is left running on it.
    assert await conn.fetchval("SELECT 1") == 1


async def test_the_worker_keeps_names_tabs_quotes_and_backslashes(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """COPY text from the worker: what needs escaping arrives as written, in cp1250 too."""
    values = ["Řehoř Žďárský", 'Anna "Nan" \\ Smith', "line\\nbreak", "=1+2"]
    path = tmp_path / "w.csv"
    body = "".join(
        f'+{phone(i)},"{v.replace(chr(34), chr(34) * 2)}"\r\n' for i, v in enumerate(values)
    )
    path.write_bytes(("phone,first_name\r\n" + body + "bad\tphone,x\r\n").encode("cp1250"))
    campaign_id = await create_campaign(
        conn, "w", Template("t", "en_US", ("first_name",)), "1000001"
    )
    old = importer.WORKER_MIN_BYTES
    importer.WORKER_MIN_BYTES = 0
    try:
        result = await import_contacts(conn, campaign_id, path, encoding="cp1250")
    finally:
        importer.WORKER_MIN_BYTES = old
    assert (result.imported, result.invalid) == (4, 1)
    rows = await conn.fetch("SELECT phone, params->>'first_name' AS name FROM contacts ORDER BY id")
    assert [r["name"] for r in rows] == [*values, "x"]
    assert rows[-1]["phone"] == "bad\tphone"


@pytest.mark.parametrize("worker", [False, True])
async def test_progress_goes_forward_and_ends_once(
    conn: asyncpg.Connection, tmp_path: Path, worker: bool
) -> None:
    campaign_id = await create_campaign(
        conn, "p", Template("t", "en_US", ("first_name",)), "1000001"
    )
    path = write_csv(tmp_path / "p.csv", [("+" + phone(i), f"N{i}") for i in range(95)])
    calls: list[tuple[int, int, int]] = []
    old = importer.CHUNK_ROWS, importer.WORKER_MIN_BYTES
    importer.CHUNK_ROWS = 10
    importer.WORKER_MIN_BYTES = 0 if worker else 1 << 40
    try:
        await import_contacts(
            conn, campaign_id, path, progress=lambda *a: calls.append((a[0], a[1], a[2]))
        )
    finally:
        importer.CHUNK_ROWS, importer.WORKER_MIN_BYTES = old
    size = path.stat().st_size
    assert calls[-1] == (size, size, 95)
    assert [c for c in calls if c[0] == size] == [calls[-1]]
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)
