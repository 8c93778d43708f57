"""Contacts out: a campaign's contacts exported (streamed through a server-side cursor, so
memory stays flat), and one contact's history (`contacts show`)."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import asyncpg

from daemon.core.states import ContactState
from daemon.db.campaigns import get_campaign
from daemon.db.sql import query
from daemon.ops.render import csv_safe

EXPORT_COLUMNS = (
    "phone",
    "state",
    "state_label",
    "invalid_reason",
    "error_code",
    "error_title",
    "attempts",
    "wamid",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "params",
)
EXPORT_FORMATS = ("csv", "json")
_PREFETCH = 2000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export_rows(
    conn: asyncpg.Connection, campaign_id: int, states: Sequence[ContactState] | None
) -> AsyncIterator[dict[str, Any]]:
    """The campaign's contacts in import order (those in `states` only, when given), one dict
    per contact with `EXPORT_COLUMNS`; must run inside a transaction (the cursor's)."""
    await get_campaign(conn, campaign_id)  # NotFoundError for a campaign that is not there
    wanted = [s.value for s in states] if states else None
    async for r in conn.cursor(query("export_contacts"), campaign_id, wanted, prefetch=_PREFETCH):
        state = ContactState(r["state"])
        yield {
            "phone": r["phone"],
            "state": state.value,
            "state_label": state.label,
            "invalid_reason": r["invalid_reason"],
            "error_code": r["error_code"],
            "error_title": r["error_title"],
            "attempts": r["attempts"],
            "wamid": r["wamid"],
            "sent_at": _iso(r["sent_at"]),
            "delivered_at": _iso(r["delivered_at"]),
            "read_at": _iso(r["read_at"]),
            "failed_at": _iso(r["failed_at"]),
            "params": r["params"],
        }


async def export_contacts(
    conn: asyncpg.Connection,
    campaign_id: int,
    out: TextIO,
    *,
    states: Sequence[ContactState] | None = None,
    fmt: str = "csv",
) -> int:
    """Write the campaign's contacts to `out` as CSV (formula-looking cells neutralised, the
    parameters as one JSON cell and one column each) or as one JSON array; the number of
    contacts written."""
    n = 0
    async with conn.transaction(readonly=True):
        if fmt == "csv":
            # Each of the template's values in a column of its own too (param.KEY), so that a
            # spreadsheet shows them, formula-looking ones neutralised like every cell.
            required, optional = (
                await get_campaign(conn, campaign_id)
            ).template_spec.import_columns()
            keys = [*required, *optional]
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow([*EXPORT_COLUMNS, *(f"param.{k}" for k in keys)])
            async for row in export_rows(conn, campaign_id, states):
                values = json.loads(row["params"]) if keys else {}
                cells = [row[c] for c in EXPORT_COLUMNS] + [values.get(k) for k in keys]
                writer.writerow([csv_safe("" if v is None else str(v)) for v in cells])
                n += 1
        else:
            out.write("[")
            async for row in export_rows(conn, campaign_id, states):
                row["params"] = json.loads(row["params"])
                out.write(("\n" if n == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
                n += 1
            out.write("\n]\n" if n else "]\n")
    return n


@dataclass(frozen=True)
class ContactHistory:
    """One phone in one campaign: each contact row it has (a removed or invalid one and a live
    one may both exist), every attempt of each (`attempt_history`: attempt, at, outcome,
    error_code, error_title, wamid, unknown), the receipts applied to each, and the phone's
    suppression."""

    campaign_id: int
    phone: str
    contacts: list[dict[str, Any]]
    suppression: dict[str, Any] | None


async def contact_history(conn: asyncpg.Connection, campaign_id: int, phone: str) -> ContactHistory:
    """What `contacts show` prints."""
    await get_campaign(conn, campaign_id)
    contacts: list[dict[str, Any]] = []
    for r in await conn.fetch(query("contacts_of_phone"), campaign_id, phone):
        contact = dict(r)
        contact["state_label"] = ContactState(r["state"]).label
        contact["params"] = json.loads(r["params"])
        contact["attempt_history"] = [
            dict(x) for x in await conn.fetch(query("attempts_of_contact"), r["id"])
        ]
        contact["receipts"] = [
            dict(x) for x in await conn.fetch(query("receipts_of_contact"), r["id"])
        ]
        contacts.append(contact)
    suppressed = await conn.fetchrow(query("suppression_of_phone"), phone)
    return ContactHistory(
        campaign_id, phone, contacts, dict(suppressed) if suppressed is not None else None
    )
