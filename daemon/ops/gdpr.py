"""GDPR: anonymise the contacts of old campaigns (`purge`), forget one person (`forget`).

Rows are anonymised rather than deleted: reports keep their counts, rates and latencies,
and a row without phone, wa_id, wamid or parameters no longer identifies anyone (the SQL is
in `sql/queries/gdpr.sql`). Both operations are idempotent: a second run changes nothing.

`forget` keeps the phone in exactly one place, the suppression list (reason `gdpr forget`):
blocking every future send to the person needs the number itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from daemon.db.sql import query

FORGET_REASON = "gdpr forget"


@dataclass(frozen=True)
class PurgeResult:
    """What `purge` anonymised: campaigns, contacts, receipts, messaging-limit entries."""

    campaigns: int
    contacts: int
    receipts: int
    window_entries: int


@dataclass(frozen=True)
class ForgetResult:
    """What `forget` did to one person: contacts, receipts, entries, the suppression."""

    contacts: int
    removed: int  # of `contacts`: still waiting to be sent, now removed
    receipts: int
    window_entries: int
    suppression_added: bool


async def purge(conn: asyncpg.Connection, older_than_days: int) -> PurgeResult:
    """Anonymise the contacts of campaigns finished or canceled more than `older_than_days`
    days ago, and scrub their status receipts (and orphan receipts as old)."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be 0 or more")
    async with conn.transaction():
        r = await conn.fetchrow(query("gdpr_purge"), older_than_days)
    return PurgeResult(r["campaigns"], r["contacts"], r["receipts"], r["window_entries"])


async def forget(conn: asyncpg.Connection, phone: str) -> ForgetResult:
    """Remove `phone` (normalised) from every campaign, receipt and window entry, and add it
    to the suppression list."""
    async with conn.transaction():
        r = await conn.fetchrow(query("gdpr_forget"), phone)
    return ForgetResult(
        r["contacts"], r["removed"], r["receipts"], r["window_entries"], r["suppressed"] > 0
    )
