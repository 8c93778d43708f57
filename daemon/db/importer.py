"""Contact import: the CSV streamed into one COPY into `contacts`, inside one transaction.

Every data row becomes exactly one contact: `initial`, or `invalid_record` with its reason.
Parsing the next chunk overlaps with PostgreSQL writing the previous one; a CSV error half
way aborts the COPY, so a bad file changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from daemon.core.csvimport import ContactRow, CsvFormatError, decode_csv_bytes, iter_contacts
from daemon.core.states import EDITABLE_CAMPAIGN_STATES, CampaignState
from daemon.core.template_check import RowChecker, row_checker
from daemon.db.campaigns import get_campaign
from daemon.db.pool import JsonText
from daemon.db.sql import query
from daemon.errors import ImportFileError, TransitionError

_COPY_COLUMNS = ["campaign_id", "phone", "params", "state", "invalid_reason", "source_line"]
_CHUNK_ROWS = 20_000
_escape = json.encoder.encode_basestring


@dataclass(frozen=True)
class ImportResult:
    """What an import did: rows read, contacts imported, rows invalid and why."""

    campaign_id: int
    rows: int
    imported: int
    invalid: int
    reasons: dict[str, int]
    notes: dict[str, int] = field(default_factory=dict)  # e.g. language_fallback: n


def open_contacts_file(
    path: Path,
    param_columns: tuple[str, ...],
    optional_columns: tuple[str, ...] = (),
    check: RowChecker | None = None,
) -> Iterator[ContactRow]:
    """Read and check the file as a whole (exists, UTF-8, header); rows come lazily."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory, not a CSV file") from None
    try:
        text = decode_csv_bytes(data, str(path))
        if check is None:
            return iter_contacts(text, param_columns, str(path))
        return iter_contacts(
            text, param_columns, str(path), optional_columns=optional_columns, check=check
        )
    except CsvFormatError as exc:
        raise ImportFileError(str(exc)) from None


def params_json(params: dict[str, str]) -> JsonText:
    """The params object as JSON text: a fast path for the import's flat string maps."""
    return JsonText("{" + ",".join(f"{_escape(k)}:{_escape(v)}" for k, v in params.items()) + "}")


async def import_contacts(conn: asyncpg.Connection, campaign_id: int, path: Path) -> ImportResult:
    """Load a contacts CSV into a draft or paused campaign, in one transaction; invalid rows are
    kept as invalid records."""
    campaign = await get_campaign(conn, campaign_id)
    _check_editable(campaign_id, campaign.state)
    spec = campaign.template_spec
    required, optional = spec.import_columns()
    rows = open_contacts_file(path, required, optional, row_checker(spec))
    reasons: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    counts = {"rows": 0, "imported": 0}

    async with conn.transaction():
        campaign = await get_campaign(conn, campaign_id, lock=True)
        _check_editable(campaign_id, campaign.state)
        existing = {
            r["phone"] for r in await conn.fetch(query("live_phones_of_campaign_all"), campaign_id)
        }
        suppressed = {r["phone"] for r in await conn.fetch(query("all_suppressed_phones"))}

        async def records() -> AsyncIterator[list[tuple[object, ...]]]:
            chunk: list[tuple[object, ...]] = []
            for row in rows:
                reason = row.invalid_reason
                if reason is None:
                    if row.phone in suppressed:
                        reason = "suppressed"
                    elif row.phone in existing:
                        reason = "duplicate_phone"
                if reason is None:
                    chunk.append(
                        (campaign_id, row.phone, params_json(row.params), "initial", None, row.line)
                    )
                    counts["imported"] += 1
                    if row.note is not None:  # e.g. its language fell back to the campaign's
                        notes[row.note] += 1
                else:
                    chunk.append(
                        (
                            campaign_id,
                            row.phone,
                            params_json(row.params),
                            "invalid_record",
                            reason,
                            row.line,
                        )
                    )
                    reasons[reason] += 1
                counts["rows"] += 1
                if len(chunk) >= _CHUNK_ROWS:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

        try:
            await conn.copy_records_to_table(
                "contacts", records=_flatten(records()), columns=_COPY_COLUMNS
            )
        except CsvFormatError as exc:
            raise ImportFileError(str(exc)) from None
    invalid = counts["rows"] - counts["imported"]
    return ImportResult(
        campaign_id, counts["rows"], counts["imported"], invalid, dict(reasons), dict(notes)
    )


async def _flatten(
    chunks: AsyncIterator[list[tuple[object, ...]]],
) -> AsyncIterator[tuple[object, ...]]:
    async for chunk in chunks:
        for record in chunk:
            yield record


def _check_editable(campaign_id: int, state: CampaignState) -> None:
    if state not in EDITABLE_CAMPAIGN_STATES:
        raise TransitionError(
            f"campaign {campaign_id} is {state.value}: contacts can be imported "
            "only while it is draft or paused"
        )
