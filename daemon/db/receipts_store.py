"""Status receipts in the database: the webhook's insert and the reconciler's batch
(SQL in sql/queries/receipts.sql)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

import asyncpg

from daemon.core.outcomes import SUPPRESS_CODES
from daemon.db import identity_store
from daemon.db.sql import query

RECEIPTS_CHANNEL: Final = "wa_sender_receipts"
"""NOTIFY channel: receipts were stored (payload: how many)."""

SUPPRESS_REASON: Final = "opted out of marketing messages (131050)"

# Unmatched receipts wait a quarter of their age before the next try, within these bounds.
BACKOFF_FACTOR: Final = 0.25
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 60.0


class ReceiptRow(Protocol):
    """One status to store (the webhook's parsed rows; a Protocol keeps db free of whatsapp)."""

    @property
    def wamid(self) -> str:
        """The message id the status is about."""

    @property
    def status(self) -> str:
        """sent, delivered, read or failed."""

    @property
    def status_at(self) -> datetime | None:
        """When the status happened, as Meta says."""

    @property
    def recipient_id(self) -> str | None:
        """The recipient's WhatsApp id."""

    @property
    def phone_number_id(self) -> str | None:
        """The sending number the status belongs to."""

    @property
    def callback_data(self) -> str | None:
        """Our callback data, echoed back."""

    @property
    def error_code(self) -> int | None:
        """The error code of a failed status."""

    @property
    def error_title(self) -> str | None:
        """The error title of a failed status."""

    @property
    def raw(self) -> dict[str, Any]:
        """The status object as received."""

    # Optional (read with getattr, so that older row types still store): user_id, pricing_*,
    # conversation_id/origin, error_details, failed_action, retry_after_s (migration 0011).


@dataclass(frozen=True, slots=True)
class OrphanReceipt:
    """A receipt no contact matched within `orphan_after_s`: kept as orphaned, and logged."""

    id: int
    wamid: str
    status: str
    recipient_id: str | None
    callback_data: str | None
    received_at: str
    reason: str | None = None  # migration 0012: why, when not for want of a match


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile batch did with the receipts it picked."""

    picked: int = 0
    applied: int = 0
    duplicate: int = 0
    unmatched: int = 0  # no contact yet: stays pending, tried again after a back-off
    busy: int = 0  # its contact was locked by another transaction: next batch
    orphaned: int = 0
    contacts_changed: int = 0
    suppressed: int = 0
    retried: int = 0  # failed statuses that sent their contact back for another attempt
    orphans: list[OrphanReceipt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What storing one webhook body did: statuses stored, or none because it was a replay."""

    stored: int
    replay: bool


DIGEST_PRUNE_BATCH: Final = 10_000
REPLAY_WINDOW_S: Final = 7 * 24 * 3600.0  # Meta retries an unacknowledged POST for 7 days


async def store_receipts(
    conn: asyncpg.Connection,
    rows: Sequence[ReceiptRow],
    digest: bytes | None = None,
    replay_window_s: float = REPLAY_WINDOW_S,
) -> StoreResult:
    """Every row of one body in one statement, with a NOTIFY for the reconcilers (same
    transaction). With the body's `digest`: nothing when the same digest was stored within
    `replay_window_s` (a replay), else the digest is kept too."""
    if not rows:
        return StoreResult(0, False)
    columns = _columns(rows)
    row = await conn.fetchrow(
        query("store_receipts"),
        *columns[:9],
        RECEIPTS_CHANNEL,
        digest,
        replay_window_s,
        *columns[9:],
    )
    assert row is not None
    return StoreResult(row["n"], row["replay"])


async def store_receipt_bodies(
    conn: asyncpg.Connection,
    bodies: Sequence[tuple[Sequence[ReceiptRow], bytes | None]],
    replay_window_s: float = REPLAY_WINDOW_S,
) -> list[StoreResult]:
    """The rows of several bodies (each with its digest or None) in one statement: the
    webhook's group commit. Per body, as `store_receipts`: stored, or nothing when a replay
    (its digest stored within `replay_window_s`, or an earlier body of this group has it)."""
    rows = [r for body_rows, _ in bodies for r in body_rows]
    numbers = [n for n, (body_rows, _) in enumerate(bodies, 1) for _ in body_rows]
    columns = _columns(rows)
    row = await conn.fetchrow(
        query("store_receipt_bodies"),
        *columns[:9],
        RECEIPTS_CHANNEL,
        [digest for _, digest in bodies],
        replay_window_s,
        *columns[9:],
        numbers,
    )
    assert row is not None
    fresh = set(row["fresh"])
    return [
        StoreResult(len(body_rows), False) if n in fresh else StoreResult(0, digest is not None)
        for n, (body_rows, digest) in enumerate(bodies, 1)
    ]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one group of bodies did: each body's StoreResult, and the statuses by verdict."""

    bodies: list[StoreResult]
    applied: int = 0
    duplicate: int = 0
    pending: int = 0  # no contact yet, or its contact busy: for the reconciler
    contacts_changed: int = 0
    suppressed: int = 0
    retried: int = 0
    orphans: list[OrphanReceipt] = field(default_factory=list)


async def ingest_receipts(
    conn: asyncpg.Connection,
    bodies: Sequence[tuple[Sequence[ReceiptRow], bytes | None]],
    *,
    replay_window_s: float = REPLAY_WINDOW_S,
    orphan_after_s: float = 3600.0,
    suppress_codes: Collection[int] = SUPPRESS_CODES,
    max_attempts: int = 5,
) -> IngestResult:
    """The rows of several bodies stored and applied to their contacts in one statement
    (replays as `store_receipt_bodies`); what cannot be applied yet is stored pending, with a
    NOTIFY for the reconcilers. One transaction with the failed statuses' retries."""
    rows = [r for body_rows, _ in bodies for r in body_rows]
    numbers = [n for n, (body_rows, _) in enumerate(bodies, 1) for _ in body_rows]
    columns = _columns(rows)
    async with conn.transaction():
        await conn.execute(query("custom_plans"))  # see ingest_receipts
        row = await conn.fetchrow(
            query("ingest_receipts"),
            *columns[:9],
            RECEIPTS_CHANNEL,
            [digest for _, digest in bodies],
            replay_window_s,
            *columns[9:],
            numbers,
            sorted(suppress_codes),
            SUPPRESS_REASON,
            orphan_after_s,
            BACKOFF_MIN_S,
        )
        assert row is not None
        retried = 0
        if row["failed_ids"]:
            retry = await conn.fetchrow(
                query("retry_failed_contacts"), row["failed_ids"], max_attempts
            )
            assert retry is not None
            retried = retry["retried"]
        if row["stale_user_ids"]:
            await identity_store.fill_contact_user_ids(conn, row["stale_user_ids"])
    fresh = set(row["fresh"])
    orphans: list[dict[str, Any]] = row["orphans"]
    return IngestResult(
        bodies=[
            StoreResult(len(body_rows), False) if n in fresh else StoreResult(0, digest is not None)
            for n, (body_rows, digest) in enumerate(bodies, 1)
        ],
        applied=row["applied"],
        duplicate=row["duplicate"],
        pending=row["pending"],
        contacts_changed=row["contacts_changed"],
        suppressed=row["suppressed"],
        retried=retried,
        orphans=[OrphanReceipt(**o) for o in orphans],
    )


def _columns(rows: Sequence[ReceiptRow]) -> list[list[Any]]:
    """The statement's arrays: the nine status columns, then migration 0011's ten."""
    return [
        [r.wamid for r in rows],
        [r.status for r in rows],
        [r.status_at for r in rows],
        [r.recipient_id for r in rows],
        [r.phone_number_id for r in rows],
        [r.callback_data for r in rows],
        [r.error_code for r in rows],
        [r.error_title for r in rows],
        [r.raw for r in rows],
        *(
            [getattr(r, name, None) for r in rows]
            for name in (
                "user_id",
                "pricing_billable",
                "pricing_model",
                "pricing_type",
                "pricing_category",
                "conversation_id",
                "conversation_origin",
                "error_details",
                "failed_action",
                "retry_after_s",
            )
        ),
    ]


async def prune_webhook_digests(
    conn: asyncpg.Connection, replay_window_s: float, batch: int = DIGEST_PRUNE_BATCH
) -> int:
    """Delete digests older than the replay window, `batch` at a time; how many."""
    total = 0
    while True:
        deleted: int = await conn.fetchval(query("prune_webhook_digests"), replay_window_s, batch)
        total += deleted
        if deleted < batch:
            return total


async def reconcile_batch(
    conn: asyncpg.Connection,
    batch_size: int,
    orphan_after_s: float,
    *,
    suppress_codes: Collection[int] = SUPPRESS_CODES,
    backoff: tuple[float, float, float] = (BACKOFF_FACTOR, BACKOFF_MIN_S, BACKOFF_MAX_S),
    max_attempts: int = 5,
) -> ReconcileResult:
    """Apply one batch of due pending receipts to their contacts: their ids, then one statement
    that plans with that many receipts."""
    factor, floor_s, ceiling_s = backoff
    async with conn.transaction():
        await conn.execute(query("custom_plans"))
        ids = [r["id"] for r in await conn.fetch(query("due_receipt_ids"), batch_size)]
        if not ids:
            return ReconcileResult()
        # One statement matches, checks the business number (migration 0012: a status of
        # another number than its campaign's is an orphan), applies, keeps the user id on
        # the contact, and marks the receipts.
        row = await conn.fetchrow(
            query("reconcile_receipts"),
            ids,
            sorted(suppress_codes),
            SUPPRESS_REASON,
            orphan_after_s,
            factor,
            floor_s,
            ceiling_s,
        )
        assert row is not None
        retry = await conn.fetchrow(query("retry_failed_contacts"), ids, max_attempts)
        assert retry is not None
        if row["stale_user_ids"]:  # statuses of an earlier attempt: not in the statement
            await identity_store.fill_contact_user_ids(conn, ids)
    orphans: list[dict[str, Any]] = row["orphans"]
    return ReconcileResult(
        picked=row["picked"],
        applied=row["applied"],
        duplicate=row["duplicate"],
        unmatched=row["unmatched"],
        busy=row["busy"],
        orphaned=row["orphaned"],
        contacts_changed=row["contacts_changed"],
        suppressed=row["suppressed"],
        retried=retry["retried"],
        orphans=[OrphanReceipt(**o) for o in orphans],
    )


async def wake_receipts_for_wamids(conn: asyncpg.Connection, wamids: Sequence[str]) -> int:
    """Pending receipts of these (just recorded) wamids are due again now; how many."""
    if not wamids:
        return 0
    async with conn.transaction():
        await conn.execute(query("custom_plans"))
        result: str = await conn.execute(query("wake_receipts_for_wamids"), list(wamids))
    return int(result.split()[-1])


async def receipt_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Receipts by processing state."""
    return {r["processing_state"]: r["n"] for r in await conn.fetch(query("receipt_counts"))}


async def any_pending_receipt(conn: asyncpg.Connection) -> bool:
    """Whether any receipt still waits to be applied."""
    found: bool = await conn.fetchval(query("any_pending_receipt"))
    return found


async def pending_receipt_count(conn: asyncpg.Connection) -> int:
    """How many stored receipts are not applied yet (a scan: for tools, not the hot path)."""
    count: int = await conn.fetchval(query("pending_receipts"))
    return count
