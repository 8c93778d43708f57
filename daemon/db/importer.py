"""Contact import: the CSV parsed as it is read, in chunks; each chunk COPied into a temporary
staging table, then one INSERT ... SELECT into `contacts` that settles duplicates (within the
chunk and with the chunks before, through a temporary table of the phones seen), phones
already in the campaign and suppressions in SQL, while the next chunk is parsed; all in one
transaction.

Every data row becomes exactly one contact, `initial` or `invalid_record` with its reason,
except rows whose phone is already live in the campaign: they are counted
(`already_in_campaign`) and not added. Memory does not grow with the file: no set of phones
is held in Python. A CSV error half way aborts the transaction, so a bad file changes nothing;
a dry run rolls back what it staged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from daemon.core.csvimport import ContactRow, CsvFormatError, iter_contacts
from daemon.core.states import EDITABLE_CAMPAIGN_STATES, CampaignState
from daemon.core.template_check import row_checker
from daemon.db import import_worker
from daemon.db.campaigns import get_campaign
from daemon.db.csvsource import CsvSource, open_csv
from daemon.db.pool import JsonText
from daemon.db.sql import query
from daemon.errors import ImportFileError, TransitionError

_STAGING_COLUMNS = ["line", "phone", "params", "reason", "note", "region", "time_zone"]
ALREADY = "already_in_campaign"
_escape = json.encoder.encode_basestring

CHUNK_ROWS = 20_000
"""Rows parsed, COPied and applied at a time: memory is a chunk's (a few MB), whatever the
file's size; PostgreSQL applies one chunk while the next is parsed."""

WORKER_MIN_BYTES = 1 << 20
"""Files this large are parsed by a worker process (db.import_worker); smaller ones here,
where starting a process would cost more than it saves."""
Chunk = list[tuple[Any, ...]] | bytes
"""Staged rows to COPY: records (parsed here) or COPY text (parsed by the worker)."""

Progress = Callable[[int, int, int], None]
"""Called now and then while a file is read: (bytes read, file size, rows parsed)."""


@dataclass(frozen=True)
class ImportResult:
    """What an import did: rows read, contacts imported, rows invalid and why, rows whose
    phone was already in the campaign (not added), and whether it was a dry run."""

    campaign_id: int
    rows: int
    imported: int
    invalid: int
    reasons: dict[str, int]
    notes: dict[str, int] = field(default_factory=dict)  # e.g. language_fallback: n
    already_in_campaign: int = 0
    dry_run: bool = False
    # Seconds spent parsing, COPYing chunks into the staging table, and waiting for
    # PostgreSQL to apply a chunk (the part of the apply the parse did not overlap).
    timings: dict[str, float] = field(default_factory=dict)


def params_json(params: dict[str, str]) -> JsonText:
    """The params object as JSON text: a fast path for the import's flat string maps."""
    return JsonText("{" + ",".join(f"{_escape(k)}:{_escape(v)}" for k, v in params.items()) + "}")


async def _chunks_here(
    rows: Iterator[ContactRow], source: CsvSource, progress: Progress | None
) -> AsyncGenerator[Chunk, None]:
    """Chunks parsed in this process (no await while parsing: the chunk before is applied by
    PostgreSQL meanwhile)."""
    staged = import_worker.staged_rows(rows)
    n = 0
    while True:
        try:
            chunk = list(itertools.islice(staged, CHUNK_ROWS))
        except CsvFormatError as exc:
            raise ImportFileError(str(exc)) from None
        if not chunk:
            break
        n += len(chunk)
        if progress is not None and source.bytes_read < source.size:  # the end: once, below
            progress(source.bytes_read, source.size, n)
        yield chunk
    if progress is not None:
        progress(source.size, source.size, n)


async def _chunks_from_worker(
    job: import_worker.ParseJob,
    size: int,
    progress: Progress | None,
    timings: dict[str, float],
) -> AsyncGenerator[Chunk, None]:
    """Chunks parsed by a worker process, as COPY text; the worker's peak RSS in `timings`."""
    process, pipe = import_worker.start(job)
    try:
        while True:
            try:
                message = await asyncio.to_thread(pipe.recv)
            except EOFError:
                raise RuntimeError("the import's parse worker stopped without a word") from None
            kind = message[0]
            if kind == "rows":
                if progress is not None and message[2] < size:  # the end: once, below
                    progress(message[2], size, message[3])
                yield message[1]
            elif kind == "done":
                if progress is not None:
                    progress(message[1], message[1], message[2])
                timings["parse_worker_peak_rss_mb"] = round(message[3] / 1024, 1)
                return
            elif kind == "error":
                raise ImportFileError(message[1])
            else:
                raise RuntimeError(f"the import's parse worker failed:\n{message[1]}")
    finally:
        # Killed first: a recv still waiting in its thread then sees the end of the pipe.
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join)
        pipe.close()


async def import_contacts(
    conn: asyncpg.Connection,
    campaign_id: int,
    path: Path,
    *,
    default_region: str | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    block_us_marketing: bool = True,
) -> ImportResult:
    """Load a contacts CSV into a draft or paused campaign, in one transaction; invalid rows are
    kept as invalid records. National numbers are read in the campaign's default country, else
    `default_region`. `dry_run`: validate and count, write nothing. `block_us_marketing`: US
    numbers of a MARKETING campaign are invalid (marketing_blocked_country)."""
    campaign = await get_campaign(conn, campaign_id)
    _check_editable(campaign_id, campaign.state)
    spec = campaign.template_spec
    required, optional = spec.import_columns()
    region = campaign.default_country or default_region
    block_us = block_us_marketing and spec.marketing
    source = open_csv(path, encoding)
    timings: dict[str, float] = {}
    try:
        try:
            rows = iter_contacts(
                source.lines(),
                required,
                str(path),
                optional_columns=optional,
                check=row_checker(spec),
                default_region=region,
            )
        except CsvFormatError as exc:
            raise ImportFileError(str(exc)) from None
        if source.size >= WORKER_MIN_BYTES:
            # The header is read here (its errors come before any write); the worker reads
            # the file again, whole.
            job = import_worker.ParseJob(
                path, encoding, spec, required, optional, region, CHUNK_ROWS
            )
            chunks = _chunks_from_worker(job, source.size, progress, timings)
        else:
            chunks = _chunks_here(rows, source, progress)
        transaction = conn.transaction()
        await transaction.start()
        try:
            counts = await _load(
                conn, campaign_id, chunks, timings, write=not dry_run, block_us=block_us
            )
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
    finally:
        source.close()
    reasons: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    imported = already = 0
    for verdict, note, n in counts:
        if verdict is None:
            imported += n
            if note is not None:
                notes[note] += n
        elif verdict == ALREADY:
            already += n
        else:
            reasons[verdict] += n
    invalid = sum(reasons.values())
    return ImportResult(
        campaign_id,
        imported + invalid + already,
        imported,
        invalid,
        dict(reasons),
        dict(notes),
        already,
        dry_run,
        timings,
    )


async def _load(
    conn: asyncpg.Connection,
    campaign_id: int,
    chunks: AsyncGenerator[Chunk, None],
    timings: dict[str, float],
    *,
    write: bool,
    block_us: bool = False,
) -> list[tuple[str | None, str | None, int]]:
    campaign = await get_campaign(conn, campaign_id, lock=True)
    _check_editable(campaign_id, campaign.state)
    await conn.execute(query("import_staging_create"))
    await conn.execute(query("import_phones_create"))
    await conn.execute(query("import_work_mem"))
    await conn.execute(query("import_phones_live"), campaign_id)
    apply = await conn.prepare(query("import_apply"))  # sent whole at each chunk: no round
    counts: list[tuple[str | None, str | None, int]] = []
    clock = {"parse_s": 0.0, "copy_s": 0.0, "apply_wait_s": 0.0}
    # One chunk applied by PostgreSQL while the next is parsed (same connection: the
    # statement is sent, its answer read once the next chunk is ready).
    applying: asyncio.Task[list[asyncpg.Record]] | None = None
    try:
        while True:
            started = time.perf_counter()
            chunk = await anext(chunks, None)
            parsed = time.perf_counter()
            clock["parse_s"] += parsed - started
            if applying is not None:
                counts += _counted(await applying)
                applying = None
            clock["apply_wait_s"] += time.perf_counter() - parsed
            if chunk is None:
                break
            copying = time.perf_counter()
            await conn.execute(query("import_staging_clear"))
            if isinstance(chunk, bytes):
                await conn.copy_to_table(
                    "import_rows", source=_once(chunk), columns=_STAGING_COLUMNS, format="text"
                )
            else:
                await conn.copy_records_to_table(
                    "import_rows", records=chunk, columns=_STAGING_COLUMNS
                )
            del chunk
            clock["copy_s"] += time.perf_counter() - copying
            applying = asyncio.ensure_future(apply.fetch(campaign_id, write, block_us))
            await asyncio.sleep(0)  # the task sends the statement before the parse goes on
    finally:
        if applying is not None:  # an error half way: let the connection finish its statement
            await asyncio.gather(applying, return_exceptions=True)
        await chunks.aclose()  # a worker stopped
    timings.update({k: round(v, 3) for k, v in clock.items()})
    return counts


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _counted(result: list[asyncpg.Record]) -> list[tuple[str | None, str | None, int]]:
    return [(r["verdict"], r["note"], r["n"]) for r in result]


def _check_editable(campaign_id: int, state: CampaignState) -> None:
    if state not in EDITABLE_CAMPAIGN_STATES:
        raise TransitionError(
            f"campaign {campaign_id} is {state.value}: contacts can be imported "
            "only while it is draft or paused"
        )
