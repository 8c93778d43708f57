"""The webhook's other fields, without I/O: inbound messages, marketing preferences, template
and number health. Each parser takes one change's `value` and returns its rows; an item that
cannot be read raises `MalformedItem` (counted, the rest of the POST still applies).

Shapes from Meta's webhook reference: `messages` with `value.messages[]` (text, button,
interactive button/list replies, ...), `user_preferences` (`value.user_preferences[]`:
wa_id, category `marketing_messages`, value `stop`/`resume`), `message_template_status_update`
(event, message_template_id/name/language, reason), `message_template_quality_update`
(previous/new_quality_score), `template_category_update` (previous/new/correct_category),
`phone_number_quality_update` (display_phone_number, event, current_limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

WAMID_MAX_CHARS: Final = 512
TEXT_MAX_CHARS: Final = 65_536  # Meta's text messages are at most 4,096 characters


class MalformedItem(ValueError):
    """One item of a change cannot be read: counted and logged, the others still apply."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One `messages[]` element a WhatsApp user sent to a business number."""

    wamid: str
    phone: str  # `from`: the user's wa_id
    user_id: str | None
    phone_number_id: str | None
    type: str
    body: str | None  # a text's body, a button's text, an interactive reply's title
    payload: str | None  # a quick-reply button's payload, an interactive reply's id
    sent_at: datetime | None
    context_wamid: str | None  # the business message it answers
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserPreference:
    """A `user_preferences[]` element: a user stopped or resumed marketing messages."""

    phone: str
    user_id: str | None
    category: str
    value: str  # stop | resume
    detail: str | None
    at: datetime | None
    phone_number_id: str | None


@dataclass(frozen=True, slots=True)
class TemplateEvent:
    """A template status, quality or category change."""

    field: str  # message_template_status_update | ..._quality_update | template_category_update
    waba_id: str
    template_id: str | None
    name: str
    language: str
    status: str | None  # status updates: APPROVED, PAUSED, DISABLED, REJECTED, FLAGGED, ...
    reason: str | None
    quality: str | None  # quality updates: the new score
    category: str | None  # category updates: the new category; status updates: the template's
    previous: str | None  # the previous score or category
    at: datetime | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NumberEvent:
    """A `phone_number_quality_update`: FLAGGED, UNFLAGGED, DOWNGRADE, UPGRADE,
    THROUGHPUT_UPGRADE, ONBOARDING ..."""

    waba_id: str
    display_phone_number: str
    event: str
    current_limit: str | None
    at: datetime | None
    raw: dict[str, Any]


TEMPLATE_FIELDS: Final = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "template_category_update",
    }
)
NUMBER_FIELD: Final = "phone_number_quality_update"
PREFERENCES_FIELD: Final = "user_preferences"


def text(value: object, limit: int = TEXT_MAX_CHARS) -> str | None:
    """A non-empty string (or an integer, as Meta sends some ids), else None."""
    if isinstance(value, str) and value:
        return value[:limit]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def inbound_message(
    item: object,
    metadata: dict[str, Any],
    user_ids: dict[str, str],
    timestamp: Any,
) -> InboundMessage:
    """One `messages[]` element; `user_ids` maps the change's contacts' wa_id -> user_id."""
    if not isinstance(item, dict):
        raise MalformedItem("a message is not an object")
    wamid, sender, kind = text(item.get("id")), text(item.get("from")), text(item.get("type"))
    if wamid is None or len(wamid) > WAMID_MAX_CHARS:
        raise MalformedItem("a message has no id")
    if sender is None:
        raise MalformedItem("a message has no sender")
    kind = kind or "unknown"
    body, payload = _content(item, kind)
    context = item.get("context")
    context_wamid = text(context.get("id")) if isinstance(context, dict) else None
    return InboundMessage(
        wamid=wamid,
        phone=sender.lstrip("+"),
        user_id=text(item.get("from_user_id")) or user_ids.get(sender),
        phone_number_id=text(metadata.get("phone_number_id")),
        type=kind,
        body=body,
        payload=payload,
        sent_at=timestamp(item.get("timestamp")),
        context_wamid=context_wamid,
        raw={**item, "metadata": metadata} if metadata else dict(item),
    )


def _content(item: dict[str, Any], kind: str) -> tuple[str | None, str | None]:
    part = item.get(kind)
    part = part if isinstance(part, dict) else {}
    if kind == "text":
        return text(part.get("body")), None
    if kind == "button":  # a template's quick-reply button
        return text(part.get("text")), text(part.get("payload"))
    if kind == "interactive":
        for reply in ("button_reply", "list_reply"):
            chosen = part.get(reply)
            if isinstance(chosen, dict):
                return text(chosen.get("title")), text(chosen.get("id"))
        return None, None
    if kind in ("image", "video", "document", "audio", "sticker"):
        return text(part.get("caption")), None
    return None, None


def user_preference(item: object, metadata: dict[str, Any], timestamp: Any) -> UserPreference:
    """One `user_preferences[]` element."""
    if not isinstance(item, dict):
        raise MalformedItem("a user preference is not an object")
    phone, value = text(item.get("wa_id")), text(item.get("value"))
    if phone is None or value is None:
        raise MalformedItem("a user preference has no wa_id or value")
    return UserPreference(
        phone=phone.lstrip("+"),
        user_id=text(item.get("user_id")),
        category=text(item.get("category")) or "marketing_messages",
        value=value.lower(),
        detail=text(item.get("detail")),
        at=timestamp(item.get("timestamp")),
        phone_number_id=text(metadata.get("phone_number_id")),
    )


def template_event(
    field: str, value: dict[str, Any], waba_id: str, at: datetime | None
) -> TemplateEvent:
    """A template status / quality / category change."""
    name, language = (
        text(value.get("message_template_name")),
        text(value.get("message_template_language")),
    )
    if name is None or language is None:
        raise MalformedItem(f"{field} without a template name and language")
    status = quality = category = previous = None
    if field == "message_template_status_update":
        status = text(value.get("event"))
        if status is None:
            raise MalformedItem(f"{field} without an event")
        status = status.upper()
        category = text(value.get("message_template_category"))
    elif field == "message_template_quality_update":
        quality = text(value.get("new_quality_score"))
        previous = text(value.get("previous_quality_score"))
        if quality is None:
            raise MalformedItem(f"{field} without new_quality_score")
    else:
        category = text(value.get("new_category"))
        previous = text(value.get("previous_category"))
        if category is None:
            raise MalformedItem(f"{field} without new_category")
    reason = text(value.get("reason"))
    other = value.get("other_info")
    if isinstance(other, dict) and (text(other.get("title")) or text(other.get("description"))):
        details = ": ".join(
            filter(None, (text(other.get("title")), text(other.get("description"))))
        )
        reason = f"{reason} ({details})" if reason and reason != "NONE" else details
    return TemplateEvent(
        field=field,
        waba_id=waba_id,
        template_id=text(value.get("message_template_id")),
        name=name,
        language=language,
        status=status,
        reason=reason,
        quality=quality.upper() if quality else None,
        category=category.upper() if category else None,
        previous=previous.upper() if previous else None,
        at=at,
        raw=value,
    )


def number_event(value: dict[str, Any], waba_id: str, at: datetime | None) -> NumberEvent:
    """A `phone_number_quality_update`."""
    number, event = text(value.get("display_phone_number")), text(value.get("event"))
    if number is None or event is None:
        raise MalformedItem("phone_number_quality_update without a number or an event")
    return NumberEvent(
        waba_id=waba_id,
        display_phone_number=number.lstrip("+"),
        event=event.upper(),
        current_limit=text(value.get("current_limit")),
        at=at,
        raw=value,
    )
