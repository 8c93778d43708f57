"""The identity of a status, checked and kept in the reconciler's transaction (SQL in
sql/queries/identity.sql): a status of another business number than its campaign's is an
orphan, never applied; the business-scoped user id of a status goes on its contact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from daemon.db.sql import query


@dataclass(frozen=True, slots=True)
class ForeignNumberReceipt:
    """A receipt kept as an orphan: its metadata.phone_number_id is not its campaign's."""

    id: int
    wamid: str
    status: str
    recipient_id: str | None
    callback_data: str | None
    received_at: str
    orphan_reason: str


async def orphan_foreign_number_receipts(
    conn: asyncpg.Connection, receipt_ids: Sequence[int]
) -> list[ForeignNumberReceipt]:
    """Of these pending receipts, those whose business number is not their campaign's become
    orphans (with the reason); the ones it found."""
    rows = await conn.fetch(query("orphan_foreign_number_receipts"), list(receipt_ids))
    return [ForeignNumberReceipt(**dict(r)) for r in rows]


async def fill_contact_user_ids(conn: asyncpg.Connection, receipt_ids: Sequence[int]) -> int:
    """The user ids of these processed receipts, kept on their contacts; how many written."""
    result: str = await conn.execute(query("fill_contact_user_ids"), list(receipt_ids))
    return int(result.split()[-1])
