"""The messages webhook, without I/O: the verification handshake, the signature check, and a
POST body turned into one receipt row per status.

Shape (Meta's messages webhook): ``object = "whatsapp_business_account"``, ``entry[]`` each
with ``changes[]``; a change with ``field = "messages"`` carries ``value.metadata`` and
``value.statuses[]``. Other fields (template status updates, ...) and incoming messages are
reported as ignored changes, not errors. Unknown status values are kept as they are.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

import orjson

from daemon.whatsapp.signature import verify

WEBHOOK_OBJECT: Final = "whatsapp_business_account"
STATUSES_FIELD: Final = "messages"
WAMID_MAX_CHARS: Final = 512  # Meta documents 128; leave room, refuse absurd ones
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


@dataclass(frozen=True, slots=True)
class IgnoredChange:
    """A webhook change we do not act on (its ``field``), and why."""

    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    """One webhook POST: the status receipts to store and the changes ignored."""

    receipts: list[ReceiptRow]
    ignored: list[IgnoredChange]


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
    """Every status of every entry/change of a POST body; WebhookPayloadError if malformed."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookPayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("object") != WEBHOOK_OBJECT:
        raise WebhookPayloadError(f"object is not {WEBHOOK_OBJECT!r}")
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise WebhookPayloadError("entry is not a list")
    receipts: list[ReceiptRow] = []
    ignored: list[IgnoredChange] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise WebhookPayloadError("an entry has no changes list")
        for change in entry["changes"]:
            if not isinstance(change, dict) or not isinstance(change.get("field"), str):
                raise WebhookPayloadError("a change has no field")
            value = change.get("value")
            if not isinstance(value, dict):
                raise WebhookPayloadError("a change has no value object")
            field = change["field"]
            if field != STATUSES_FIELD:
                ignored.append(IgnoredChange(field, "not a messages change"))
                continue
            statuses = value.get("statuses")
            if statuses is None:
                ignored.append(IgnoredChange(field, "no statuses (incoming messages)"))
                continue
            if not isinstance(statuses, list):
                raise WebhookPayloadError("statuses is not a list")
            metadata = value.get("metadata")
            metadata = metadata if isinstance(metadata, dict) else {}
            receipts.extend(_receipt(status, metadata) for status in statuses)
    return ParsedWebhook(receipts, ignored)


def _receipt(status: object, metadata: dict[str, Any]) -> ReceiptRow:
    if not isinstance(status, dict):
        raise WebhookPayloadError("a status is not an object")
    wamid, kind = status.get("id"), status.get("status")
    if not isinstance(wamid, str) or not wamid or len(wamid) > WAMID_MAX_CHARS:
        raise WebhookPayloadError("a status has no message id")
    if not isinstance(kind, str) or not kind:
        raise WebhookPayloadError("a status has no status value")
    error_code, error_title = _first_error(status.get("errors"))
    phone_number_id = metadata.get("phone_number_id")
    return ReceiptRow(
        wamid=wamid,
        status=kind,
        status_at=parse_timestamp(status.get("timestamp")),
        recipient_id=_text(status.get("recipient_id")),
        phone_number_id=_text(phone_number_id),
        callback_data=_text(status.get("biz_opaque_callback_data")),
        error_code=error_code,
        error_title=error_title,
        raw={**status, "metadata": metadata} if metadata else dict(status),
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
