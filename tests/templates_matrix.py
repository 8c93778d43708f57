"""Every component kind in both parameter formats, as the end-to-end test sends them: the
mock's sample template, the campaign's options, one contact's CSV values, and which
documented exceptions the body needs against Meta's *official* schema (unpatched).

The exceptions, each a place where the official OpenAPI spec (v23.0) refuses what Meta's own
documentation sends (daemon/mockapi/schema/README.md):

- `language.policy`: LanguageObject requires `policy`; Meta's examples (and wa-sender) omit
  it. Every body needs this one.
- `button.index`: the index pattern `^[2-6, 11-14]$` is a broken character class that
  rejects "0" (and "7".."9"); buttons at index 0 need it.
- `button.copy_code`: ButtonComponent's sub_type enum lacks `copy_code`, and
  ButtonParameterObject's type enum lacks `coupon_code` (copy-code coupon buttons).
- `header.location`: ParameterObject's type enum lacks `location` (location headers).
- `marketing.callback_data`, `marketing.ttl`: MarketingMessageRequestPayload forbids unknown
  fields, and lists neither `biz_opaque_callback_data` nor `message_send_ttl_seconds`.

`undo(body, exception)` turns a body into one the official schema accepts as far as that
exception goes; the test checks that the undone body is officially valid, and that leaving
out any one undo makes it invalid again (each listed exception is really needed).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from daemon.mockapi.validation import inline_refs

SCHEMA_DIR = Path(__file__).parent / "data" / "schema"
TINY_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
# A 1 x 1 white PNG.
TINY_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
    b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)
HEADER_FILES = {".pdf": TINY_PDF, ".png": TINY_PNG}


@dataclass(frozen=True)
class Case:
    """One campaign of the matrix."""

    kind: str  # the component kind, as the report's table names it
    template: str
    named: bool
    values: dict[str, str]  # one contact's CSV values ({i}: the contact's index)
    sets: dict[str, str] = field(default_factory=dict)
    param_types: dict[str, str] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    header_file: str | None = None
    marketing: bool = False  # sent with whatsapp.marketing_endpoint = marketing_messages
    ttl: int | None = None
    policy: str | None = None
    exceptions: frozenset[str] = frozenset({"language.policy"})

    @property
    def id(self) -> str:
        return f"{self.kind}-{'named' if self.named else 'positional'}" + (
            "-mm" if self.marketing else ""
        )


P = frozenset({"language.policy"})
B0 = P | {"button.index"}


def _both(
    kind: str,
    stem: str,
    values: dict[str, str],
    named_values: dict[str, str] | None = None,
    **kwargs: Any,
) -> list[Case]:
    named = dict(named_values if named_values is not None else values)
    return [
        Case(kind, stem, False, values, **kwargs),
        Case(kind, f"{stem}_named", True, named, **_named(kwargs)),
    ]


def _named(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    if "param_types" in out:
        rename = {"2": "amount", "3": "due_date"}
        out["param_types"] = {rename.get(k, k): v for k, v in out["param_types"].items()}
    if "sets" in out:
        out["sets"] = {k.replace("body.2.", "body.amount."): v for k, v in out["sets"].items()}
    return out


NAME = {"body.1": "Name{i}"}
NAMED = {"body.first_name": "Name{i}"}

CASES: list[Case] = [
    *_both(
        "header text",
        "sample_header_text",
        {"header.text": "Summer {i}", **NAME},
        {"header.text": "Summer {i}", **NAMED},
    ),
    *_both(
        "header image (link)",
        "sample_image",
        {"header.image.link": "https://cdn.example.com/{i}.jpg", **NAME},
        {"header.image.link": "https://cdn.example.com/{i}.jpg", **NAMED},
    ),
    *_both(
        "header image (media id)",
        "sample_image",
        NAME,
        NAMED,
        sets={"header.image.id": "4490709327384033"},
    ),
    *_both(
        "header image (uploaded file)",
        "sample_image",
        NAME,
        NAMED,
        header_file="spring.png",
    ),
    *_both(
        "header video (link)",
        "sample_video",
        {"header.video.link": "https://cdn.example.com/{i}.mp4", **NAME},
        {"header.video.link": "https://cdn.example.com/{i}.mp4", **NAMED},
    ),
    *_both(
        "header video (media id)",
        "sample_video",
        NAME,
        NAMED,
        sets={"header.video.id": "1166846181421424"},
    ),
    *_both(
        "header document (link, filename)",
        "sample_document",
        {
            "header.document.link": "https://cdn.example.com/{i}.pdf",
            "header.document.filename": "Invoice {i}.pdf",
            **NAME,
        },
        {
            "header.document.link": "https://cdn.example.com/{i}.pdf",
            "header.document.filename": "Invoice {i}.pdf",
            **NAMED,
        },
    ),
    *_both(
        "header document (uploaded file)",
        "sample_document",
        NAME,
        NAMED,
        header_file="brochure.pdf",
    ),
    *_both(
        "header location",
        "sample_location",
        {
            "header.location.latitude": "50.08{i}",
            "header.location.longitude": "14.42",
            "header.location.name": "Store {i}",
            "header.location.address": "Main St {i}",
            **NAME,
        },
        {"header.location.latitude": "50.08{i}", "header.location.longitude": "14.42", **NAMED},
        exceptions=P | {"header.location"},
    ),
    *_both(
        "body text",
        "sample_body_types",
        {"body.1": "Name{i}", "body.2": "25 USD", "body.3": "May {i}"},
        {"body.first_name": "Name{i}", "body.amount": "25 USD", "body.due_date": "May {i}"},
    ),
    *_both(
        "body currency",
        "sample_body_types",
        {"body.1": "Name{i}", "body.2.amount": "2{i}.50", "body.3": "May {i}"},
        {"body.first_name": "Name{i}", "body.amount.amount": "2{i}.50", "body.due_date": "May {i}"},
        param_types={"2": "currency"},
        sets={"body.2.code": "USD"},
    ),
    *_both(
        "body date_time",
        "sample_body_types",
        {"body.1": "Name{i}", "body.2": "25 USD", "body.3": "May {i}, 2026"},
        {"body.first_name": "Name{i}", "body.amount": "25 USD", "body.due_date": "May {i}, 2026"},
        param_types={"3": "date_time"},
    ),
    *_both(
        "button url",
        "sample_url_button",
        {**NAME, "button.0.url_suffix": "o/{i}"},
        {**NAMED, "button.0.url_suffix": "o/{i}"},
        exceptions=B0,
    ),
    *_both(
        "button quick reply",
        "sample_quick_reply",
        {**NAME, "button.1.payload": "STOP_{i}"},
        {**NAMED, "button.1.payload": "STOP_{i}"},
    ),
    *_both(
        "button copy code",
        "sample_copy_code",
        {**NAME, "button.0.coupon_code": "SPRING{i}"},
        {**NAMED, "button.0.coupon_code": "SPRING{i}"},
        exceptions=B0 | {"button.copy_code"},
    ),
    Case(
        "authentication OTP copy code",
        "sample_otp_copy_code",
        False,
        {"body.1": "48291{i}"},
        exceptions=B0,
    ),
    Case(
        "authentication OTP one tap",
        "sample_otp_one_tap",
        False,
        {"body.1": "48291{i}"},
        exceptions=B0,
    ),
    Case(
        "authentication OTP zero tap",
        "sample_otp_zero_tap",
        False,
        {"body.1": "48291{i}"},
        exceptions=B0,
    ),
    *_both(
        "rich (image, 4 variables, 3 buttons)",
        "sample_rich",
        {
            "header.image.link": "https://cdn.example.com/{i}.jpg",
            "body.1": "Name{i}",
            "body.2": "{i}0",
            "body.3.amount": "1{i}.5",
            "body.3.code": "EUR",
            "body.4": "June",
            "button.0.url_suffix": "o/{i}",
            "button.1.payload": "STOP",
            "button.2.coupon_code": "C{i}",
        },
        {
            "header.image.link": "https://cdn.example.com/{i}.jpg",
            "body.first_name": "Name{i}",
            "body.points": "{i}0",
            "body.worth.amount": "1{i}.5",
            "body.worth.code": "EUR",
            "body.expiry": "June",
            "button.0.url_suffix": "o/{i}",
            "button.1.payload": "STOP",
            "button.2.coupon_code": "C{i}",
        },
        param_types={"3": "currency", "4": "date_time"},
        exceptions=B0 | {"button.copy_code"},
    ),
    Case(
        "legacy --param (unverified)",
        "spring_sale",
        False,
        {"first_name": "Name{i}"},
        params=("first_name",),
    ),
    # The Marketing Messages API: MARKETING templates through /marketing_messages with the
    # campaign's TTL and product policy; a UTILITY template still through /messages.
    Case(
        "marketing messages API",
        "sample_copy_code_named",
        True,
        {**NAMED, "button.0.coupon_code": "SPRING{i}"},
        marketing=True,
        ttl=86400,
        policy="CLOUD_API_FALLBACK",
        exceptions=B0 | {"button.copy_code", "marketing.callback_data", "marketing.ttl"},
    ),
    Case(
        "marketing messages API, UTILITY template",
        "sample_location",
        False,
        {"header.location.latitude": "50", "header.location.longitude": "14", **NAME},
        marketing=True,
        exceptions=P | {"header.location"},
    ),
]
# sample_rich's positional variables are 1..4: its types apply to 3 and 4, not renamed.
CASES = [
    Case(**{**c.__dict__, "param_types": {"worth": "currency", "expiry": "date_time"}})
    if c.template == "sample_rich_named"
    else c
    for c in CASES
]


def undo(body: dict[str, Any], exception: str) -> None:
    """Make `body` acceptable to the official schema as far as `exception` goes."""
    components = body["template"].get("components", [])
    if exception == "language.policy":
        body["template"]["language"]["policy"] = "deterministic"
    elif exception == "button.index":
        for component in components:
            if component["type"] == "button" and component["index"] == "0":
                component["index"] = (
                    "2" if not any(c.get("index") == "2" for c in components) else "3"
                )
    elif exception == "button.copy_code":
        for component in components:
            if component.get("sub_type") == "copy_code":
                component["sub_type"] = "url"
                code = component["parameters"][0]["coupon_code"]
                component["parameters"] = [{"type": "text", "text": code}]
    elif exception == "header.location":
        for component in components:
            if component["type"] == "header" and component["parameters"][0]["type"] == "location":
                component["parameters"] = [{"type": "text", "text": "location"}]
    elif exception == "marketing.callback_data":
        body.pop("biz_opaque_callback_data", None)
    elif exception == "marketing.ttl":
        body.pop("message_send_ttl_seconds", None)
    else:
        raise ValueError(exception)


class OfficialSchema:
    """Meta's unpatched request schemas, for /messages and /marketing_messages."""

    def __init__(self) -> None:
        self._validators = {}
        for endpoint, name in (
            ("messages", "official_template_message.json"),
            ("marketing_messages", "official_marketing_message.json"),
        ):
            document = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
            assert document["x-patches"] == []
            self._validators[endpoint] = Draft202012Validator(inline_refs(document))

    def valid(self, endpoint: str, body: dict[str, Any]) -> bool:
        return bool(self._validators[endpoint].is_valid(body))

    def needed_exceptions(
        self, endpoint: str, body: dict[str, Any], listed: frozenset[str]
    ) -> tuple[bool, bool, list[str]]:
        """(valid with every listed undo, valid with none, listed exceptions not needed)."""
        every = copy.deepcopy(body)
        for exception in listed:
            undo(every, exception)
        not_needed = []
        for exception in sorted(listed):
            without = copy.deepcopy(body)
            for other in listed - {exception}:
                undo(without, other)
            if self.valid(endpoint, without):
                not_needed.append(exception)
        return self.valid(endpoint, every), self.valid(endpoint, body), not_needed
