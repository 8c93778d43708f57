"""The webhook's other fields applied: inbound messages and opt-outs (stored here, applied by
`engine.inbound`), marketing preferences, template and number health (the parsing is
`whatsapp/webhook.py`, the SQL `sql/queries/listening.sql`). Called by the webhook handler
inside its store deadline; every operation is idempotent, so a POST Meta delivers again changes
nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from daemon.config import Config
from daemon.core.health import (
    TemplateAction,
    number_event_effect,
    template_pause_reason,
    template_status_effect,
)
from daemon.core.optout import OptOutRules
from daemon.db import listening_store as store
from daemon.db.sql import query
from daemon.logs import get_logger, mask_phone
from daemon.whatsapp.webhook import ParsedWebhook
from daemon.whatsapp.webhook_fields import InboundMessage, TemplateEvent

log = get_logger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ListeningStats:
    """What the webhook applied besides statuses."""

    inbound: int = 0
    opt_outs: int = 0
    contacts_stopped: int = 0
    preferences: int = 0
    template_events: int = 0
    campaigns_paused: int = 0
    campaigns_resumed: int = 0
    campaigns_recategorised: int = 0
    number_events: int = 0


def opt_out_reason(message: InboundMessage, rules: OptOutRules) -> str | None:
    """Why an inbound message is an opt-out (shown on the suppression list and the
    contacts it stopped), or None."""
    if rules.payload_opts_out(message.payload):
        return f"quick reply {message.payload!r}"
    if message.type == "text" and rules.text_opts_out(message.body):
        return f"replied {message.body.strip()[:40]!r}" if message.body else None
    if message.type == "button" and rules.text_opts_out(message.body):
        return f"button {message.body!r}"
    return None


async def apply_listening(
    conn: asyncpg.Connection,
    parsed: ParsedWebhook,
    config: Config,
    rules: OptOutRules,
    stats: ListeningStats,
) -> None:
    """Apply one POST's inbound messages, preferences, template and number events."""
    if parsed.numbers_seen:
        await store.numbers_seen(conn, parsed.numbers_seen)
    if parsed.inbound:
        # Stored here, applied right after in batches (engine.inbound, woken by the handler).
        reasons = [opt_out_reason(m, rules) for m in parsed.inbound]
        stats.inbound += await store.store_inbound(conn, parsed.inbound, reasons)
        for message, reason in zip(parsed.inbound, reasons, strict=True):
            if reason is not None:
                log.info("opt_out_received", phone=mask_phone(message.phone), reason=reason)
    for preference in sorted(parsed.preferences, key=lambda p: p.at or _EPOCH):
        stats.preferences += 1
        if preference.value == "stop":
            stopped = await store.marketing_stop(
                conn,
                preference.phone,
                preference.user_id,
                preference.detail or "User requested to stop marketing messages",
            )
            stats.contacts_stopped += stopped
            log.info("marketing_stopped", phone=mask_phone(preference.phone), contacts=stopped)
        elif preference.value == "resume":
            await store.marketing_resume(conn, preference.phone)
            log.info("marketing_resumed", phone=mask_phone(preference.phone))
    changed = False
    for event in parsed.template_events:
        changed |= await _template_event(conn, event, stats)
    for number in parsed.number_events:
        stats.number_events += 1
        effect = number_event_effect(number.event, config.sender.flagged_rate_factor)
        number_id = await store.number_event(
            conn,
            number.display_phone_number,
            number.event,
            effect.marketing_rate_factor,
            effect.throughput_upgraded,
            number.current_limit,
            number.at,
        )
        log.warning(
            "number_quality_event",
            display_phone_number=mask_phone(number.display_phone_number),
            phone_number_id=number_id,
            quality_event=number.event,
            marketing_rate_factor=effect.marketing_rate_factor,
        )
    if changed:
        await conn.execute(query("notify_campaigns_changed"), "template")


async def _template_event(
    conn: asyncpg.Connection, event: TemplateEvent, stats: ListeningStats
) -> bool:
    stats.template_events += 1
    waba, name, language = event.waba_id, event.name, event.language
    if event.field == "message_template_quality_update":
        assert event.quality is not None
        await store.template_quality_event(
            conn, waba, name, language, event.template_id, event.quality
        )
        log.info(
            "template_quality_changed",
            template=name,
            language=language,
            previous=event.previous,
            quality=event.quality,
        )
        return False
    if event.field == "template_category_update":
        assert event.category is not None
        await store.template_category_event(
            conn, waba, name, language, event.template_id, event.category, event.previous
        )
        moved = await store.recategorise_template_campaigns(
            conn, waba, name, language, event.category
        )
        stats.campaigns_recategorised += len(moved)
        log.warning(
            "template_category_changed",
            template=name,
            language=language,
            previous=event.previous,
            category=event.category,
            campaigns=moved,
        )
        return bool(moved)
    assert event.status is not None
    effect = template_status_effect(event.status)
    await store.template_status_event(
        conn,
        waba,
        name,
        language,
        event.template_id,
        effect.catalogue_status,
        event.reason,
        event.category,
    )
    if effect.action is TemplateAction.PAUSE:
        reason = template_pause_reason(name, language, event.status, event.reason)
        paused = await store.pause_template_campaigns(conn, waba, name, language, reason)
        stats.campaigns_paused += len(paused)
        log.warning(
            "template_paused_by_meta",
            template=name,
            language=language,
            status=event.status,
            campaigns=paused,
            reason=event.reason,
        )
        return bool(paused)
    if effect.action is TemplateAction.RESUME:
        resumed, released = await store.resume_template_campaigns(conn, waba, name, language)
        stats.campaigns_resumed += len(resumed)
        log.info(
            "template_approved_again",
            template=name,
            language=language,
            campaigns=resumed,
            contacts_released=released,
        )
        return bool(resumed or released)
    log.info("template_status_changed", template=name, language=language, status=event.status)
    return False
