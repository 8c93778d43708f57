"""Campaign lifecycle, contact removal and the suppression list, as named operations."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from daemon.core.model import Campaign, CampaignId, CampaignProgress
from daemon.core.payload import Template
from daemon.core.states import (
    EDITABLE_CAMPAIGN_STATES,
    CampaignCommand,
    CampaignState,
    ContactState,
    ForbiddenCampaignTransition,
    campaign_next_state,
)
from daemon.core.template_spec import CampaignTemplate, TemplateSource
from daemon.core.template_stored import catalogue_problem, spec_from_json, spec_to_json
from daemon.db.sql import query
from daemon.db.templates_store import templates_named
from daemon.errors import NotFoundError, TemplateRefusedError, TransitionError

CAMPAIGNS_CHANNEL = "wa_sender_campaigns"


def campaign_from_record(r: asyncpg.Record) -> Campaign:
    """The Campaign of a `campaigns` row."""
    raw_spec = r["template_spec"]
    return Campaign(
        id=CampaignId(r["id"]),
        name=r["name"],
        state=CampaignState(r["state"]),
        template=Template(r["template_name"], r["template_language"], tuple(r["template_params"])),
        phone_number_id=r["phone_number_id"],
        pause_reason=r["pause_reason"],
        hold_reason=r["hold_reason"],
        hold_until=r["hold_until"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        spec=None if raw_spec is None else _stored_spec(orjson.dumps(raw_spec)),
        stop_seq=r.get("stop_seq", 0),
        default_country=r.get("default_country"),
        start_at=r.get("start_at"),
        send_window=r.get("send_window"),
        window_zone=r.get("window_zone"),
        finish_by=r.get("finish_by"),
        template_category=r.get("template_category"),
        budget=r.get("budget"),
        budget_currency=r.get("budget_currency"),
        rate_card=r.get("rate_card"),
    )


@functools.lru_cache(maxsize=256)
def _stored_spec(document: bytes) -> CampaignTemplate:
    # Read on every claim round for every running campaign: parsed once per binding.
    return spec_from_json(orjson.loads(document))


async def create_campaign(
    conn: asyncpg.Connection,
    name: str,
    template: Template,
    phone_number_id: str,
    *,
    spec: CampaignTemplate | None = None,
) -> CampaignId:
    """A new draft campaign; its id. `spec`: its template's binding (None: a campaign named by
    `template` alone, its body parameters in `template.param_columns`)."""
    campaign_id = await conn.fetchval(
        query("create_campaign"),
        name,
        template.name,
        template.language,
        list(template.param_columns),
        phone_number_id,
        spec.source.value if spec is not None else "unverified",
        spec.waba_id or None if spec is not None else None,
        spec.definition.category or None if spec is not None else None,
        spec_to_json(spec) if spec is not None else None,
    )
    return CampaignId(campaign_id)


async def set_default_country(
    conn: asyncpg.Connection, campaign_id: int, country: str | None
) -> None:
    """The country the campaign's imports read national numbers in (None: the import's)."""
    await conn.execute(query("set_campaign_default_country"), campaign_id, country)


async def get_campaign(
    conn: asyncpg.Connection, campaign_id: int, *, lock: bool = False
) -> Campaign:
    """The campaign (row-locked in the transaction when `lock`); NotFoundError if there is none."""
    record = await conn.fetchrow(query("lock_campaign" if lock else "get_campaign"), campaign_id)
    if record is None:
        raise NotFoundError(f"campaign {campaign_id} does not exist")
    return campaign_from_record(record)


async def list_campaigns(conn: asyncpg.Connection) -> list[Campaign]:
    """Every campaign."""
    return [campaign_from_record(r) for r in await conn.fetch(query("list_campaigns"))]


async def campaign_progress(conn: asyncpg.Connection, campaign_id: int) -> CampaignProgress:
    """The campaign with its contacts counted by state."""
    campaign = await get_campaign(conn, campaign_id)
    counts = {state: 0 for state in ContactState}
    for r in await conn.fetch(query("campaign_state_counts"), campaign_id):
        counts[ContactState(r["state"])] = r["n"]
    row = await conn.fetchrow(query("campaign_health"), campaign_id)
    health = dict(row["health"]) if row is not None and row["health"] is not None else None
    waiting = None
    now = datetime.now(UTC)
    # Contacts wait for their send window (migration 0013, sql/queries/windows.sql) or, in a
    # campaign without one, for a frequency cap (one index probe says whether any does).
    if (
        campaign.send_window is not None
        or await conn.fetchval(query("next_window_open"), [campaign_id], now) is not None
    ):
        found = await conn.fetchrow(query("window_waiting"), campaign_id, now)
        waiting = (int(found["waiting"]), found["next_open"])
    return CampaignProgress(campaign, counts, health, waiting)


_COMMAND_QUERY = {
    CampaignCommand.START: "start_campaign",
    CampaignCommand.SCHEDULE: "schedule_campaign",
    CampaignCommand.PAUSE: "pause_campaign",
    CampaignCommand.RESUME: "resume_campaign",
    CampaignCommand.CANCEL: "cancel_campaign",
}


ADMIN_PAUSE_REASON = "paused by admin"
"""The pause reason of an operator's pause; any other reason is a pause by the daemon."""


async def change_campaign_state(
    conn: asyncpg.Connection,
    campaign_id: int,
    command: CampaignCommand,
    reason: str | None = None,
    *,
    start_at: datetime | None = None,
) -> Campaign:
    """Apply an operator's lifecycle command in one short transaction (the campaign row only),
    and NOTIFY the daemons; a forbidden one raises TransitionError.

    Pause and cancel are stops: they take the next stop number (`Campaign.stop_seq`), which
    every daemon confirms once it holds nothing of the campaign (`ops.lifecycle` waits for
    that). Cancel leaves the contacts to `cancel_pending_batch`."""
    async with conn.transaction():
        campaign = await get_campaign(conn, campaign_id, lock=True)
        try:
            campaign_next_state(campaign.state, command)
        except ForbiddenCampaignTransition as exc:
            raise TransitionError(f"campaign {campaign_id}: {exc}") from None
        if command in (CampaignCommand.START, CampaignCommand.SCHEDULE, CampaignCommand.RESUME):
            problem = await template_problem(conn, campaign)
            if problem is not None:
                raise TemplateRefusedError(
                    f"campaign {campaign_id} cannot {command.value}: {problem}"
                    " (`wa-sender templates sync` reads the catalogue again)"
                )
        args: list[Any] = [campaign_id]
        if command is CampaignCommand.PAUSE:
            args.append(reason or ADMIN_PAUSE_REASON)
        elif command is CampaignCommand.SCHEDULE:
            if start_at is None:
                raise ValueError("schedule needs start_at")
            args.append(start_at)
        record = await conn.fetchrow(query(_COMMAND_QUERY[command]), *args)
        await conn.execute(query("notify_campaigns_changed"), f"{campaign_id}:{command.value}")
    return campaign_from_record(record)


async def template_problem(conn: asyncpg.Connection, campaign: Campaign) -> str | None:
    """Why the campaign may not send with the catalogue as it is now (None: it may); the
    check `campaign start` and `resume` make against the current catalogue entry."""
    spec = campaign.template_spec
    waba_id = spec.waba_id if spec.source is TemplateSource.CATALOGUE else ""
    return catalogue_problem(spec, await templates_named(conn, spec.name, waba_id))


async def cancel_pending_batch(
    conn: asyncpg.Connection, campaign_id: int, after_id: int, limit: int
) -> tuple[int, int | None]:
    """Up to `limit` contacts of a canceled campaign not sent yet (ids above `after_id`)
    become Canceled by admin: (how many, the highest id done or None)."""
    row = await conn.fetchrow(query("cancel_pending_batch"), campaign_id, after_id, limit)
    return int(row["n"]), row["last_id"]


async def cancel_unheld_in_progress(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Contacts of a canceled campaign in progress with a daemon that can no longer send:
    Canceled by admin, outcome unknown. How many."""
    status: str = await conn.execute(query("cancel_unheld_in_progress"), campaign_id)
    return int(status.rpartition(" ")[2])


async def pending_contact_count(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Contacts of the campaign initial, retry scheduled or in progress."""
    count: int = await conn.fetchval(query("pending_contact_count"), campaign_id)
    return count


async def remove_contacts(
    conn: asyncpg.Connection, campaign_id: int, phones: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """Remove contacts by (normalised) phone. Returns (removed, {phone: why not removed})."""
    async with conn.transaction():
        campaign = await get_campaign(conn, campaign_id, lock=True)
        if campaign.state not in EDITABLE_CAMPAIGN_STATES:
            raise TransitionError(
                f"campaign {campaign_id} is {campaign.state.value}: contacts can be removed "
                "only while it is draft or paused"
            )
        removed = [
            r["phone"]
            for r in await conn.fetch(query("remove_contacts"), campaign_id, list(phones))
        ]
        states: dict[str, list[str]] = {}
        for r in await conn.fetch(query("contacts_by_phone"), campaign_id, list(phones)):
            states.setdefault(r["phone"], []).append(r["state"])
    not_removed: dict[str, str] = {}
    for phone in phones:
        if phone in removed:
            continue
        present = [s for s in states.get(phone, []) if s not in ("removed", "invalid_record")]
        if present:
            not_removed[phone] = "already " + ContactState(present[0]).label.lower()
        elif phone in states:
            not_removed[phone] = "already removed"
        else:
            not_removed[phone] = "not in this campaign"
    return removed, not_removed


async def add_suppression(conn: asyncpg.Connection, phone: str, reason: str) -> bool:
    """Put a phone on the suppression list; False if it was there already."""
    return await conn.fetchval(query("add_suppression"), phone, reason) is not None


async def add_suppressions(conn: asyncpg.Connection, phones: Sequence[str], reason: str) -> None:
    """Put phones on the suppression list (those listed already stay as they are)."""
    if phones:
        await conn.execute(query("add_suppressions"), list(phones), [reason] * len(phones))


async def remove_suppression(conn: asyncpg.Connection, phone: str) -> bool:
    """Take a phone off the suppression list; False if it was not on it."""
    return await conn.fetchval(query("remove_suppression"), phone) is not None


async def list_suppressions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The suppression list: phone, reason, created_at."""
    return list(await conn.fetch(query("list_suppressions")))
