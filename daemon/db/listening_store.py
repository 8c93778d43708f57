"""Inbound messages, opt-outs, marketing preferences, template and number health as named
operations (SQL in sql/queries/listening.sql)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from daemon.db.sql import query


class Inbound(Protocol):
    """One inbound message to store (the webhook's parsed rows)."""

    @property
    def wamid(self) -> str:
        """Its message id."""

    @property
    def phone(self) -> str:
        """The sender's wa_id."""

    @property
    def user_id(self) -> str | None:
        """The sender's business-scoped user id."""

    @property
    def phone_number_id(self) -> str | None:
        """The business number it was sent to."""

    @property
    def type(self) -> str:
        """text, button, interactive, ..."""

    @property
    def body(self) -> str | None:
        """Its text."""

    @property
    def payload(self) -> str | None:
        """A button's payload."""

    @property
    def sent_at(self) -> datetime | None:
        """When the user sent it."""

    @property
    def context_wamid(self) -> str | None:
        """The business message it answers."""

    @property
    def raw(self) -> dict[str, Any]:
        """As received."""


async def store_inbound(
    conn: asyncpg.Connection, messages: Sequence[Inbound], opt_out_reasons: Sequence[str | None]
) -> int:
    """Store the messages once each (those with a reason are opt-outs), to be applied by
    `apply_inbound`; how many were new."""
    if not messages:
        return 0
    stored: int = await conn.fetchval(
        query("store_inbound"),
        [m.wamid for m in messages],
        [m.phone for m in messages],
        [m.user_id for m in messages],
        [m.phone_number_id for m in messages],
        [m.type for m in messages],
        [m.body for m in messages],
        [m.payload for m in messages],
        [m.sent_at for m in messages],
        [m.context_wamid for m in messages],
        [r is not None for r in opt_out_reasons],
        [m.raw for m in messages],
        opt_out_reasons,
    )
    return stored


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What applying a batch of stored inbound messages did."""

    applied: int
    opt_outs: int
    suppressed: int
    contacts_stopped: int


async def apply_inbound(conn: asyncpg.Connection, limit: int) -> InboundResult:
    """Apply up to `limit` stored inbound messages: matched to their campaign message; opt-outs
    on the suppression list and the phone's pending contacts stopped, in one statement."""
    async with conn.transaction():
        await conn.execute(query("inbound_apply_settings"))
        row = await conn.fetchrow(query("apply_inbound"), limit)
    assert row is not None
    return InboundResult(
        row["applied"], row["opt_outs"], row["suppressed"], row["contacts_stopped"]
    )


async def inbound_pending(conn: asyncpg.Connection) -> bool:
    """Whether a stored inbound message waits to be applied."""
    return bool(await conn.fetchval(query("inbound_pending")))


async def marketing_stop(
    conn: asyncpg.Connection, phone: str, user_id: str | None, detail: str
) -> int:
    """A user stopped marketing messages: marketing-only suppression, pending contacts of
    marketing campaigns stopped; how many contacts."""
    row = await conn.fetchrow(query("marketing_stop"), phone, user_id, detail)
    assert row is not None
    stopped: int = row["contacts_stopped"]
    return stopped


async def marketing_resume(conn: asyncpg.Connection, phone: str) -> bool:
    """A user resumed marketing messages: the marketing-only suppression goes."""
    return await conn.fetchval(query("marketing_resume"), phone) is not None


async def template_status_event(
    conn: asyncpg.Connection,
    waba_id: str,
    name: str,
    language: str,
    template_id: str | None,
    status: str,
    reason: str | None,
    category: str | None,
) -> None:
    """Record a template's new status in the catalogue."""
    await conn.execute(
        query("template_status_event"),
        waba_id,
        name,
        language,
        template_id,
        status,
        reason,
        category,
    )


async def pause_template_campaigns(
    conn: asyncpg.Connection, waba_id: str, name: str, language: str, reason: str
) -> list[int]:
    """Pause (by Meta) every running campaign of the template; their ids."""
    rows = await conn.fetch(query("pause_template_campaigns"), waba_id, name, language, reason)
    return [r["id"] for r in rows]


async def resume_template_campaigns(
    conn: asyncpg.Connection, waba_id: str, name: str, language: str
) -> tuple[list[int], int]:
    """Resume the campaigns Meta paused for the template; their ids and how many contacts
    held by 132015 are due again."""
    row = await conn.fetchrow(query("resume_template_campaigns"), waba_id, name, language)
    assert row is not None
    return list(row["resumed"]), row["released"]


async def template_quality_event(
    conn: asyncpg.Connection,
    waba_id: str,
    name: str,
    language: str,
    template_id: str | None,
    score: str,
) -> None:
    """Record a template's new quality score."""
    await conn.execute(query("template_quality_event"), waba_id, name, language, template_id, score)


async def template_category_event(
    conn: asyncpg.Connection,
    waba_id: str,
    name: str,
    language: str,
    template_id: str | None,
    category: str,
    previous: str | None,
) -> None:
    """Record a template's new category."""
    await conn.execute(
        query("template_category_event"), waba_id, name, language, template_id, category, previous
    )


async def recategorise_template_campaigns(
    conn: asyncpg.Connection, waba_id: str, name: str, language: str, category: str
) -> list[int]:
    """Meta changed the template's category: every campaign of it that may still send takes
    the new one (column and stored binding); their ids."""
    rows = await conn.fetch(
        query("recategorise_template_campaigns"), waba_id, name, language, category
    )
    return [r["id"] for r in rows]


async def template_health(
    conn: asyncpg.Connection, name: str, language: str, waba_id: str = ""
) -> dict[str, Any] | None:
    """The template's status, reason, quality and category as Meta last reported them."""
    row = await conn.fetchrow(query("template_health"), name, language, waba_id)
    return dict(row) if row is not None else None


async def numbers_seen(conn: asyncpg.Connection, pairs: Mapping[str, str]) -> None:
    """Remember display number -> phone_number_id pairs."""
    if pairs:
        await conn.execute(query("numbers_seen"), list(pairs), list(pairs.values()))


async def number_event(
    conn: asyncpg.Connection,
    display: str,
    event: str,
    factor: float | None,
    upgraded: bool | None,
    current_limit: str | None,
    at: datetime | None,
) -> str | None:
    """Record a number's quality event; its phone_number_id when known."""
    number: str | None = await conn.fetchval(
        query("number_event"), display, event, factor, upgraded, current_limit, at
    )
    return number


async def number_health(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every known business number's quality event and rate factors."""
    return list(await conn.fetch(query("number_health")))
