"""Contact import: parse the CSV, then one COPY into `contacts` inside one transaction.

Every data row becomes exactly one contact: `initial`, or `invalid_record` with its reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from daemon.core.csvimport import ContactRow, CsvFormatError, decode_csv_bytes, parse_contacts
from daemon.core.states import EDITABLE_CAMPAIGN_STATES, ContactState
from daemon.db.campaigns import get_campaign
from daemon.db.sql import query
from daemon.errors import ImportFileError, TransitionError

_COPY_COLUMNS = ["campaign_id", "phone", "params", "state", "invalid_reason", "source_line"]


@dataclass(frozen=True)
class ImportResult:
    campaign_id: int
    rows: int
    imported: int
    invalid: int
    reasons: dict[str, int]


def read_contacts_file(
    path: Path, param_columns: tuple[str, ...]
) -> tuple[list[ContactRow], list[ContactRow]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory, not a CSV file") from None
    try:
        parsed = parse_contacts(decode_csv_bytes(data, str(path)), param_columns, str(path))
    except CsvFormatError as exc:
        raise ImportFileError(str(exc)) from None
    return parsed.valid, parsed.invalid


async def import_contacts(conn: asyncpg.Connection, campaign_id: int, path: Path) -> ImportResult:
    campaign = await get_campaign(conn, campaign_id)
    _check_editable(campaign_id, campaign.state)
    valid, invalid = read_contacts_file(path, campaign.template.param_columns)

    async with conn.transaction():
        campaign = await get_campaign(conn, campaign_id, lock=True)
        _check_editable(campaign_id, campaign.state)
        phones = [row.phone for row in valid]
        existing = {
            r["phone"]
            for r in await conn.fetch(query("live_phones_of_campaign"), campaign_id, phones)
        }
        suppressed = {r["phone"] for r in await conn.fetch(query("suppressed_among"), phones)}
        records: list[tuple[object, ...]] = []
        for row in valid:
            reason = None
            if row.phone in suppressed:
                reason = "suppressed"
            elif row.phone in existing:
                reason = "duplicate_phone"
            if reason is None:
                records.append((campaign_id, row.phone, row.params, "initial", None, row.line))
            else:
                invalid.append(ContactRow(row.line, row.phone, row.params, reason))
        imported = len(records)
        records.extend(
            (
                campaign_id,
                row.phone,
                row.params,
                ContactState.INVALID_RECORD.value,
                row.invalid_reason,
                row.line,
            )
            for row in invalid
        )
        await conn.copy_records_to_table("contacts", records=records, columns=_COPY_COLUMNS)
    reasons = Counter(row.invalid_reason or "" for row in invalid)
    return ImportResult(campaign_id, imported + len(invalid), imported, len(invalid), dict(reasons))


def _check_editable(campaign_id: int, state: object) -> None:
    if state not in EDITABLE_CAMPAIGN_STATES:
        raise TransitionError(
            f"campaign {campaign_id} is {getattr(state, 'value', state)}: contacts can be imported "
            "only while it is draft or paused"
        )
