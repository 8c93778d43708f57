"""The identity of a status (SQL in sql/queries/identity.sql): the business-scoped user id of
a status of an earlier attempt goes on its contact. (reconcile_receipts and ingest_receipts
keep it for the others, and make a status of another business number than its campaign's an
orphan, in their own statement.)"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from daemon.db.sql import query


async def fill_contact_user_ids(conn: asyncpg.Connection, receipt_ids: Sequence[int]) -> int:
    """The user ids of these processed receipts, kept on their contacts; how many written."""
    result: str = await conn.execute(query("fill_contact_user_ids"), list(receipt_ids))
    return int(result.split()[-1])
