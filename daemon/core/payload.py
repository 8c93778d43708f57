"""The body of a template-message send, and the callback data that ties a receipt to its attempt.

Shape: Meta's OpenAPI `TemplateMessage` (BaseMessageProperties + TemplateObject).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

CALLBACK_PREFIX: Final = "ws1"
CALLBACK_DATA_MAX_CHARS: Final = 512  # Meta's limit on biz_opaque_callback_data


@dataclass(frozen=True, slots=True)
class Template:
    """An approved template: its name, language, and the columns of its body parameters."""

    name: str
    language: str  # the exact locale the template was approved in, e.g. "en_US"
    param_columns: tuple[str, ...] = ()  # body parameters {{1}}, {{2}}... in order


@dataclass(frozen=True, slots=True)
class CallbackRef:
    """The attempt a receipt's callback data names: campaign, contact and attempt number."""

    campaign_id: int
    contact_id: int
    attempt: int


def build_template_message(
    template: Template, to: str, params: Mapping[str, str], callback_data: str
) -> dict[str, Any]:
    """The request body; ValueError when a body parameter is missing or empty."""
    if len(callback_data) > CALLBACK_DATA_MAX_CHARS:
        raise ValueError(f"callback data longer than {CALLBACK_DATA_MAX_CHARS} characters")
    template_object: dict[str, Any] = {
        "name": template.name,
        "language": {"code": template.language},
    }
    if template.param_columns:
        template_object["components"] = [
            {"type": "body", "parameters": _body_parameters(template.param_columns, params)}
        ]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "biz_opaque_callback_data": callback_data,
        "template": template_object,
    }


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire."""
    return orjson.dumps(body)


def encode_callback_data(campaign_id: int, contact_id: int, attempt: int) -> str:
    """The `biz_opaque_callback_data` of one attempt, read back by `decode_callback_data`."""
    return f"{CALLBACK_PREFIX}:{campaign_id}:{contact_id}:{attempt}"


def decode_callback_data(value: object) -> CallbackRef | None:
    """The attempt named by our own callback data; None for anything else (never raises)."""
    if not isinstance(value, str) or len(value) > CALLBACK_DATA_MAX_CHARS:
        return None
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != CALLBACK_PREFIX:
        return None
    numbers = parts[1:]
    # int() alone would also take " 7", "+7", "1_000" and non-ASCII digits.
    if not all(part.isascii() and part.isdigit() for part in numbers):
        return None
    campaign_id, contact_id, attempt = (int(part) for part in numbers)
    return CallbackRef(campaign_id, contact_id, attempt)


def _body_parameters(columns: tuple[str, ...], params: Mapping[str, str]) -> list[dict[str, str]]:
    parameters = []
    for column in columns:
        text = params.get(column)
        if not text:  # Meta refuses empty text parameters too
            raise ValueError(f"template parameter {column!r} is missing")
        parameters.append({"type": "text", "text": text})
    return parameters
