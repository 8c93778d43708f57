"""What the mock posts besides statuses, in Meta's shapes: inbound replies (texts, opt-out
keywords in several languages, quick-reply buttons), user_preferences, template and number
events (`POST /_control/...`, mockapi/events.py)."""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any, Final

REPLIES: Final = ("Thanks!", "When does it start?", "ok", "👍", "Can I bring a friend?")
STOP_TEXTS: Final = ("STOP", "Stop", "ODHLÁSIT", "odhlasit", "Stopp", "BAJA", "unsubscribe")
STOP_PAYLOAD: Final = "STOP_PROMOTIONS"


def reply_content(rng: random.Random, opt_out: bool) -> tuple[str, str | None]:
    """(text, quick-reply payload) of one reply: an opt-out says STOP in one of several
    languages, or presses the STOP_PROMOTIONS button."""
    if not opt_out:
        return rng.choice(REPLIES), None
    if rng.random() < 0.5:
        return rng.choice(STOP_TEXTS), None
    return "Stop promotions", STOP_PAYLOAD


def message_object(
    wamid: str, sender: str, timestamp: int, text: str, payload: str | None, context: str | None
) -> dict[str, Any]:
    """One `messages[]` element: a text, or a template's quick-reply button press."""
    out: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": str(timestamp)}
    if context is not None:
        out["context"] = {"from": "15550783881", "id": context}
    if payload is not None:
        out.update(type="button", button={"payload": payload, "text": text})
    else:
        out.update(type="text", text={"body": text})
    return out


def user_id_of(wa_id: str) -> str:
    """A stable business-scoped user id for a wa_id (Meta's shape: CC.digits)."""
    digest = hashlib.sha256(f"bsuid:{wa_id}".encode()).hexdigest()
    return f"US.{int(digest[:16], 16) % 10**19:019d}"


def messages_change(
    phone_number_id: str, display: str, messages: list[dict[str, Any]], with_user_id: bool
) -> dict[str, Any]:
    """A `messages` change carrying inbound messages and their senders' contacts[]."""
    contacts = []
    for message in messages:
        contact: dict[str, Any] = {"profile": {"name": "Mock User"}, "wa_id": message["from"]}
        if with_user_id:
            contact["user_id"] = user_id_of(message["from"])
        contacts.append(contact)
    return {
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
            "contacts": contacts,
            "messages": messages,
        },
        "field": "messages",
    }


def event_document(waba_id: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """A whole webhook body with one change (template, number, preference events)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": int(time.time()),
                "changes": [{"value": value, "field": field}],
            }
        ],
    }


def inbound_document(
    waba_id: str,
    phone_number_id: str,
    display: str,
    wa_id: str,
    text: str,
    payload: str | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """A whole webhook body with one inbound message from `wa_id` (a text, or a quick-reply
    press when `payload`), answering the business message `context` when given."""
    message = message_object(
        f"wamid.in.{hashlib.sha256(f'{wa_id}:{text}:{time.time_ns()}'.encode()).hexdigest()[:24]}",
        wa_id,
        int(time.time()),
        text,
        payload,
        context,
    )
    change = messages_change(phone_number_id, display, [message], with_user_id=False)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "time": int(time.time()), "changes": [change]}],
    }


def template_status_value(
    name: str, language: str, event: str, reason: str = "NONE", template_id: int = 1
) -> dict[str, Any]:
    """A `message_template_status_update` value."""
    return {
        "event": event,
        "message_template_id": template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
    }


def number_quality_value(display: str, event: str, limit: str = "TIER_10K") -> dict[str, Any]:
    """A `phone_number_quality_update` value."""
    return {"display_phone_number": display, "event": event, "current_limit": limit}


def user_preferences_value(
    phone_number_id: str, display: str, wa_id: str, value: str
) -> dict[str, Any]:
    """A `user_preferences` value: the user stops or resumes marketing messages."""
    detail = "stop" if value == "stop" else "resume"
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Mock User"}, "wa_id": wa_id}],
        "user_preferences": [
            {
                "wa_id": wa_id,
                "detail": f"User requested to {detail} marketing messages",
                "category": "marketing_messages",
                "value": value,
                "timestamp": int(time.time()),
            }
        ],
    }
