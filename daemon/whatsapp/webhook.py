"""The webhook, without I/O: the verification handshake, the signature check, and a POST
body turned into rows: status receipts, inbound messages, marketing preferences, template and
number events (`whatsapp/webhook_fields.py`).

Shape (Meta's webhooks): ``object = "whatsapp_business_account"``, ``entry[]`` each with
``changes[]``; a change has a ``field`` and a ``value``. ``messages`` carries
``value.metadata`` and ``value.statuses[]`` and/or ``value.messages[]``. Unknown fields are
reported as ignored changes, not errors; unknown status values are kept as they are.

Partial batches: an entry, change, status or message that cannot be read is counted in
`malformed` (with why) and the rest of the body still applies, so that one bad item does not
make Meta retry (or after 7 days drop) the good ones. Only a body that is not a webhook at all
(not JSON, not an object, no ``object``, our object without an ``entry`` list) is refused; a
webhook of another ``object`` is acknowledged and ignored.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

import orjson

from daemon.core.failed_status import classify_failed_status
from daemon.core.payload import decode_callback_data
from daemon.whatsapp.signature import verify
from daemon.whatsapp.webhook_fields import (
    NUMBER_FIELD,
    PREFERENCES_FIELD,
    TEMPLATE_FIELDS,
    WAMID_MAX_CHARS,
    InboundMessage,
    MalformedItem,
    NumberEvent,
    TemplateEvent,
    UserPreference,
    inbound_message,
    number_event,
    template_event,
    user_preference,
)

WEBHOOK_OBJECT: Final = "whatsapp_business_account"
STATUSES_FIELD: Final = "messages"
# Epoch seconds Meta could plausibly send: 2000-01-01 .. 2100-01-01.
_MIN_EPOCH: Final = 946_684_800
_MAX_EPOCH: Final = 4_102_444_800
_INT32: Final = 2**31 - 1  # error codes are stored as integer


class WebhookPayloadError(ValueError):
    """The body is not JSON or not a WhatsApp webhook: answer 400."""


class SignatureCheck(Enum):
    """How a webhook POST's ``X-Hub-Signature-256`` compares with its body."""

    VALID = "valid"
    MISSING = "missing"  # 401
    INVALID = "invalid"  # 403


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    """One ``statuses[]`` element, as stored in ``status_receipts``."""

    wamid: str
    status: str
    status_at: datetime | None
    recipient_id: str | None
    phone_number_id: str | None
    callback_data: str | None
    error_code: int | None
    error_title: str | None
    raw: dict[str, Any]
    """The status object as received, plus ``metadata`` of its change (phone_number_id)."""
    user_id: str | None = None
    pricing_billable: bool | None = None
    pricing_model: str | None = None
    pricing_type: str | None = None
    pricing_category: str | None = None
    conversation_id: str | None = None
    conversation_origin: str | None = None
    error_details: str | None = None
    failed_action: str | None = None  # core.failed_status.FailedAction of a failed status
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class IgnoredChange:
    """A webhook change we do not act on (its ``field``), and why."""

    field: str
    reason: str


@dataclass(slots=True)
class ParsedWebhook:
    """One webhook POST: what to store and apply, the changes ignored, the items malformed."""

    receipts: list[ReceiptRow] = field(default_factory=list)
    ignored: list[IgnoredChange] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    preferences: list[UserPreference] = field(default_factory=list)
    template_events: list[TemplateEvent] = field(default_factory=list)
    number_events: list[NumberEvent] = field(default_factory=list)
    numbers_seen: dict[str, str] = field(default_factory=dict)
    """display_phone_number -> phone_number_id, from the changes' metadata."""
    malformed: list[str] = field(default_factory=list)
    """Why each item that could not be read was left out."""

    @property
    def empty(self) -> bool:
        """Nothing to store or apply."""
        return not (
            self.receipts
            or self.inbound
            or self.preferences
            or self.template_events
            or self.number_events
        )


def check_signature(body: bytes, header_value: str | None, app_secret: str) -> SignatureCheck:
    """``X-Hub-Signature-256`` against the raw body bytes, constant-time."""
    if not header_value or not header_value.strip():
        return SignatureCheck.MISSING
    return (
        SignatureCheck.VALID if verify(body, header_value, app_secret) else SignatureCheck.INVALID
    )


def handshake_challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to answer with, or None when the handshake must be refused."""
    if query.get("hub.mode") != "subscribe" or not verify_token:
        return None
    given = query.get("hub.verify_token", "")
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), verify_token.encode("utf-8", "surrogateescape")
    ):
        return None
    challenge = query.get("hub.challenge")
    return challenge if challenge else None


def parse_webhook(body: bytes | memoryview) -> ParsedWebhook:
    """Every item of every entry/change of a POST body; WebhookPayloadError only when the body
    is not a webhook at all (see the module docstring)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookPayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("object"), str):
        raise WebhookPayloadError("body is not a webhook (no object)")
    parsed = ParsedWebhook()
    if document["object"] != WEBHOOK_OBJECT:
        parsed.ignored.append(IgnoredChange(document["object"][:100], "another object"))
        return parsed
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise WebhookPayloadError("entry is not a list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            parsed.malformed.append("an entry has no changes list")
            continue
        waba_id = _text(entry.get("id")) or ""
        at = parse_timestamp(entry.get("time"))
        for change in entry["changes"]:
            try:
                _change(parsed, change, waba_id, at)
            except MalformedItem as exc:
                parsed.malformed.append(str(exc))
    return parsed


def _change(parsed: ParsedWebhook, change: object, waba_id: str, at: datetime | None) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("field"), str):
        raise MalformedItem("a change has no field")
    value = change.get("value")
    if not isinstance(value, dict):
        raise MalformedItem("a change has no value object")
    name = change["field"]
    if name in TEMPLATE_FIELDS:
        parsed.template_events.append(template_event(name, value, waba_id, at))
        return
    if name == NUMBER_FIELD:
        parsed.number_events.append(number_event(value, waba_id, at))
        return
    if name not in (STATUSES_FIELD, PREFERENCES_FIELD):
        parsed.ignored.append(IgnoredChange(name[:100], "not a field wa-sender acts on"))
        return
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    display, number_id = (
        _text(metadata.get("display_phone_number")),
        _text(metadata.get("phone_number_id")),
    )
    if display and number_id:
        parsed.numbers_seen[display.lstrip("+")] = number_id
    user_ids = _user_ids(value.get("contacts"))
    acted = False
    for key, handle in _ITEMS.items():
        items = value.get(key)
        if items is None:
            continue
        acted = True
        if not isinstance(items, list):
            parsed.malformed.append(f"{key} is not a list")
            continue
        for item in items:
            try:
                handle(parsed, item, metadata, user_ids)
            except MalformedItem as exc:
                parsed.malformed.append(str(exc))
    if not acted:
        reason = "errors only" if value.get("errors") else "nothing wa-sender acts on"
        parsed.ignored.append(IgnoredChange(name, reason))


def _add_status(
    parsed: ParsedWebhook, item: object, metadata: dict[str, Any], user_ids: dict[str, str]
) -> None:
    parsed.receipts.append(_receipt(item, metadata, user_ids))


def _add_message(
    parsed: ParsedWebhook, item: object, metadata: dict[str, Any], user_ids: dict[str, str]
) -> None:
    message = inbound_message(item, metadata, user_ids, parse_timestamp)
    _storable(message.raw)
    parsed.inbound.append(message)


def _add_preference(
    parsed: ParsedWebhook, item: object, metadata: dict[str, Any], user_ids: dict[str, str]
) -> None:
    preference = user_preference(item, metadata, parse_timestamp)
    if preference.user_id is None and preference.phone in user_ids:
        preference = replace(preference, user_id=user_ids[preference.phone])
    parsed.preferences.append(preference)


_ITEMS: Final = {
    "statuses": _add_status,
    "messages": _add_message,
    "user_preferences": _add_preference,
}


def _user_ids(contacts: object) -> dict[str, str]:
    """wa_id -> business-scoped user id, from a change's `contacts[]`."""
    found: dict[str, str] = {}
    if isinstance(contacts, list):
        for contact in contacts:
            if isinstance(contact, dict):
                wa_id, user_id = _text(contact.get("wa_id")), _text(contact.get("user_id"))
                if wa_id and user_id:
                    found[wa_id] = user_id
    return found


def _user_id(recipient: str | None, user_ids: dict[str, str]) -> str | None:
    if recipient is not None:
        return user_ids.get(recipient)
    # v24 statuses may name the user by its business-scoped id only, in contacts[].
    return next(iter(user_ids.values())) if len(user_ids) == 1 else None


def _storable(raw: dict[str, Any]) -> None:
    """PostgreSQL cannot hold NUL characters or lone surrogates: such an item is malformed
    (before, one of them made the whole POST fail)."""
    try:
        dumped = orjson.dumps(raw)
    except orjson.JSONEncodeError:
        raise MalformedItem("an item holds text that cannot be stored (lone surrogate)") from None
    if b"\\u0000" in dumped:
        raise MalformedItem("an item holds a NUL character")


def _receipt(status: object, metadata: dict[str, Any], user_ids: dict[str, str]) -> ReceiptRow:
    if not isinstance(status, dict):
        raise MalformedItem("a status is not an object")
    wamid, kind = status.get("id"), status.get("status")
    if not isinstance(wamid, str) or not wamid or len(wamid) > WAMID_MAX_CHARS:
        raise MalformedItem("a status has no message id")
    if not isinstance(kind, str) or not kind:
        raise MalformedItem("a status has no status value")
    raw = {**status, "metadata": metadata} if metadata else dict(status)
    _storable(raw)
    errors = status.get("errors")
    first = (
        errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
    )
    error_code, error_title = _first_error(errors)
    details = None
    action = retry_after_s = None
    callback = _text(status.get("biz_opaque_callback_data"))
    if kind == "failed":
        ref = decode_callback_data(callback)
        verdict = classify_failed_status(first, ref.attempt if ref is not None else None)
        action, retry_after_s = verdict.action.value, verdict.retry_after_s
        details = verdict.outcome.error_details
    recipient = _text(status.get("recipient_id"))
    pricing = status.get("pricing")
    pricing = pricing if isinstance(pricing, dict) else {}
    conversation = status.get("conversation")
    conversation = conversation if isinstance(conversation, dict) else {}
    origin = conversation.get("origin")
    billable = pricing.get("billable")
    return ReceiptRow(
        wamid=wamid,
        status=kind,
        status_at=parse_timestamp(status.get("timestamp")),
        recipient_id=recipient,
        phone_number_id=_text(metadata.get("phone_number_id")),
        callback_data=callback,
        error_code=error_code,
        error_title=error_title,
        raw=raw,
        user_id=_text(status.get("recipient_user_id")) or _user_id(recipient, user_ids),
        pricing_billable=billable if isinstance(billable, bool) else None,
        pricing_model=_text(pricing.get("pricing_model")),
        pricing_type=_text(pricing.get("type")),
        pricing_category=_text(pricing.get("category")),
        conversation_id=_text(conversation.get("id")),
        conversation_origin=_text(origin.get("type")) if isinstance(origin, dict) else None,
        error_details=details[:2000] if details else None,
        failed_action=action,
        retry_after_s=retry_after_s,
    )


def parse_timestamp(value: object) -> datetime | None:
    """Webhook timestamps are strings of epoch seconds; None when absent or implausible."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            return None
        seconds = int(value)
    elif isinstance(value, int):
        seconds = value
    else:
        return None
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _first_error(errors: object) -> tuple[int | None, str | None]:
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    first = errors[0]
    code = first.get("code")
    title = first.get("title") or first.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or abs(code) > _INT32:
        code = None
    return code, title if isinstance(title, str) else None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
