"""The mock's template catalogue: what `GET /{version}/{waba_id}/message_templates` serves
(cursor-paged, like Graph) and what sends are checked against (`mockapi.template_check`).

Built-in samples cover every component kind in both parameter formats (authentication
templates are positional by Meta's design), plus the templates of the demo and the load
test; `wa-sender mock-api --templates FILE` serves a file instead (Meta's shape).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from daemon.core.templates import TemplateDef, TemplateError, parse_template
from daemon.mockapi.template_fit import TemplateFit

DEFAULT_PAGE_LIMIT: Final = 25
MAX_PAGE_LIMIT: Final = 1000


def _template(
    name: str,
    components: list[dict[str, Any]],
    *,
    named: bool = False,
    category: str = "MARKETING",
    language: str = "en_US",
    status: str = "APPROVED",
) -> dict[str, Any]:
    return {
        "name": name,
        "language": language,
        "status": status,
        "category": category,
        "parameter_format": "NAMED" if named else "POSITIONAL",
        "components": components,
        "id": str(10**14 + zlib.crc32(f"{name}:{language}".encode())),
    }


def _header(kind: str, text: str | None = None) -> dict[str, Any]:
    header: dict[str, Any] = {"type": "HEADER", "format": kind}
    if text is not None:
        header["text"] = text
    return header


def _body(text: str) -> dict[str, Any]:
    return {"type": "BODY", "text": text}


def _buttons(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"type": "BUTTONS", "buttons": list(buttons)}


_FOOTER = {"type": "FOOTER", "text": "Reply STOP to opt out"}
_URL_BUTTON = {"type": "URL", "text": "Open", "url": "https://shop.example.com/o/{{1}}"}
_STATIC_URL = {"type": "URL", "text": "Help", "url": "https://shop.example.com/help"}
_QUICK_REPLY = {"type": "QUICK_REPLY", "text": "Stop promotions"}
_COPY_CODE = {"type": "COPY_CODE", "example": "SPRING20"}
_PHONE = {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550100100"}


def _pair(stem: str, components: Any, *, category: str = "MARKETING") -> list[dict[str, Any]]:
    """A sample in both parameter formats: `stem` ({{1}}..) and `stem_named` ({{name}}..)."""
    return [
        _template(stem, components(False), category=category),
        _template(f"{stem}_named", components(True), named=True, category=category),
    ]


def _v(named: bool, number: int, name: str) -> str:
    return f"{{{{{name if named else number}}}}}"


def _samples() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    out += _pair(
        "sample_header_text",
        lambda n: [
            _header("TEXT", f"Our {_v(n, 1, 'season')} sale"),
            _body(f"Hi {_v(n, 1, 'first_name')}, it starts today."),
            _FOOTER,
        ],
    )
    for kind in ("IMAGE", "VIDEO", "DOCUMENT"):
        out += _pair(
            f"sample_{kind.lower()}",
            lambda n, kind=kind: [
                _header(kind),
                _body(f"Hi {_v(n, 1, 'first_name')}, here is your {kind.lower()}."),
            ],
        )
    out += _pair(
        "sample_location",
        lambda n: [_header("LOCATION"), _body(f"Hi {_v(n, 1, 'first_name')}, visit us here.")],
        category="UTILITY",
    )
    out += _pair(
        "sample_body_types",
        lambda n: [
            _body(
                f"Hi {_v(n, 1, 'first_name')}, {_v(n, 2, 'amount')} is due on"
                f" {_v(n, 3, 'due_date')}."
            )
        ],
        category="UTILITY",
    )
    out += _pair(
        "sample_url_button",
        lambda n: [
            _body(f"Hi {_v(n, 1, 'first_name')}, your order."),
            _buttons(_URL_BUTTON, _STATIC_URL),
        ],
    )
    out += _pair(
        "sample_quick_reply",
        lambda n: [
            _body(f"Hi {_v(n, 1, 'first_name')}, new arrivals."),
            _buttons(_PHONE, _QUICK_REPLY),
        ],
    )
    out += _pair(
        "sample_copy_code",
        lambda n: [
            _body(f"Hi {_v(n, 1, 'first_name')}, 20 % off with this code."),
            _buttons(_COPY_CODE),
        ],
    )
    for otp_type in ("COPY_CODE", "ONE_TAP", "ZERO_TAP"):
        button: dict[str, Any] = {"type": "OTP", "otp_type": otp_type, "text": "Copy code"}
        if otp_type != "COPY_CODE":
            button |= {
                "autofill_text": "Autofill",
                "package_name": "com.example.app",
                "signature_hash": "K8a/AINcGX7",
            }
        out.append(
            _template(
                f"sample_otp_{otp_type.lower()}",
                [
                    {
                        "type": "BODY",
                        "text": "*{{1}}* is your verification code.",
                        "add_security_recommendation": True,
                    },
                    {"type": "FOOTER", "text": "This code expires in 10 minutes."},
                    _buttons(button),
                ],
                category="AUTHENTICATION",
            )
        )
    out += _pair(
        "sample_rich",
        lambda n: [
            _header("IMAGE"),
            _body(
                f"Hi {_v(n, 1, 'first_name')}, {_v(n, 2, 'points')} points, worth"
                f" {_v(n, 3, 'worth')}, until {_v(n, 4, 'expiry')}."
            ),
            _FOOTER,
            _buttons(_URL_BUTTON, _QUICK_REPLY, _COPY_CODE),
        ],
    )
    # Translations, for per-contact languages.
    out.append(
        _template(
            "sample_header_text",
            [
                _header("TEXT", "Unser {{1}}-Schlussverkauf"),
                _body("Hallo {{1}}, heute geht's los."),
            ],
            language="de_DE",
        )
    )
    out.append(
        _template("sample_order_update", [_body("Order {{1}} has shipped.")], category="UTILITY")
    )
    out.append(_template("sample_paused", [_body("Hi {{1}}, a paused template.")], status="PAUSED"))
    out.append(
        _template("hello_world", [_body("Hello World")], category="UTILITY", language="en_US")
    )
    # The demo's: an image header, a named body variable and a URL button.
    out.append(
        _template(
            "spring_offer",
            [
                _header("IMAGE"),
                _body("Hi {{first_name}}, our spring collection is here."),
                _buttons(
                    {
                        "type": "URL",
                        "text": "Shop now",
                        "url": "https://shop.example.com/spring/{{1}}",
                    }
                ),
            ],
            named=True,
        )
    )
    # The load test's body-only template.
    out.append(_template("loadtest_offer", [_body("Hi {{1}}, your offer is ready.")]))
    return out


SAMPLE_TEMPLATES: Final[tuple[dict[str, Any], ...]] = tuple(_samples())


class Catalogue:
    """The templates the mock knows, parsed once: by name and language for the send check,
    in order for the listing endpoint."""

    def __init__(self, documents: Iterable[Mapping[str, Any]], *, strict: bool = False) -> None:
        self.documents: list[Mapping[str, Any]] = list(documents)
        self.strict = strict  # names it does not know answer 132001
        self.by_name: dict[str, dict[str, TemplateDef]] = {}
        # The compiled one-pass check of each approved entry, by (name, language).
        self.fits: dict[tuple[str, str], TemplateFit] = {}
        for document in self.documents:
            try:
                template = parse_template(document)
            except TemplateError:
                continue  # listed, but never accepted for sending
            self.by_name.setdefault(template.name, {})[template.language] = template
            if template.approved:
                self.fits[(template.name, template.language)] = TemplateFit(template)

    def fit_for(self, body: object) -> TemplateFit | None:
        """The compiled check of the template a body names, if the catalogue has it."""
        if type(body) is not dict:
            return None
        template = body.get("template")
        if type(template) is not dict:
            return None
        language = template.get("language")
        if type(language) is not dict:
            return None
        name, code = template.get("name"), language.get("code")
        if type(name) is not str or type(code) is not str:
            return None
        return self.fits.get((name, code))

    def page(self, limit: int, after: str | None, fields: Sequence[str] | None) -> dict[str, Any]:
        """One page of the listing, Graph's cursor paging: data, paging.cursors, paging.next
        (a path and query the caller prefixes with its base URL)."""
        start = _decode_cursor(after) if after else 0
        limit = max(1, min(limit, MAX_PAGE_LIMIT))
        chosen = self.documents[start : start + limit]
        data = [_fields(document, fields) for document in chosen]
        page: dict[str, Any] = {"data": data}
        if chosen:
            page["paging"] = {
                "cursors": {"before": _cursor(start), "after": _cursor(start + len(chosen))}
            }
        return page

    def has_more(self, after: str | None, limit: int) -> bool:
        """Whether entries follow the page starting at `after`."""
        start = _decode_cursor(after) if after else 0
        return start + max(1, min(limit, MAX_PAGE_LIMIT)) < len(self.documents)


def _fields(document: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    if not fields:
        return {
            k: v
            for k, v in document.items()
            if k in ("name", "status", "id", "language", "category")
        }
    picked = {k: document[k] for k in fields if k in document}
    picked["id"] = document.get("id")
    return picked


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"i:{index}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "i" or not value.isdigit():
            raise ValueError(cursor)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        return 0
