"""Turning a campaign's template and one contact's values into the request body, cheaply.

`compile_body` works out, once per campaign, language and sending number (a media id is per
number), everything that is the same for every contact, and returns a builder:
`build(to, params, callback) -> bytes`, the UTF-8 JSON body of one send. The builder is
generated code, one `b"".join` of the static fragments and the contact's values (JSON-encoded
by orjson), so each send costs one Python-level call, whatever the template. The generated
source names only its own constants (`S0`, `K0`, ...): no value ever becomes code.

Shapes follow Meta's send reference: header text/media/location, body text/currency/date_time
(with `parameter_name` for NAMED templates), buttons by index (url suffix, quick-reply
payload, copy-code coupon, and for authentication templates the code as the url parameter
of the OTP button, whichever its otp_type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from daemon.core.template_check import amount_1000
from daemon.core.template_spec import (
    CampaignTemplate,
    ValueType,
    media_kind,
)
from daemon.core.templates import MEDIA_FORMATS, ButtonType, HeaderFormat, TemplateDef

MESSAGES: Final = "messages"
MARKETING_MESSAGES: Final = "marketing_messages"

BodyBuilder = Callable[[str, Mapping[str, str], str], bytes]
"""`build(to, params, callback_data) -> body bytes`; KeyError when a value is missing."""


@dataclass(frozen=True, slots=True)
class _Text:
    """A contact's value, sent as a JSON string."""

    key: str


@dataclass(frozen=True, slots=True)
class _Raw:
    """A contact's value, sent as it is stored (digits: amount_1000)."""

    key: str


@dataclass(frozen=True, slots=True)
class _Optional:
    """A member (or array element) present only when the contact has a value for `key`."""

    key: str
    node: Any


_TO = object()
_CALLBACK = object()


def compile_body(
    spec: CampaignTemplate,
    language: str | None = None,
    *,
    media_id: str | None = None,
    endpoint: str = MESSAGES,
) -> BodyBuilder:
    """The body builder of `spec` in `language` (default: the campaign's). `media_id`: the
    header file's id for the sending number (required when the campaign has a header file).
    For the Marketing Messages API the body also carries the campaign's product policy and
    TTL when set."""
    return _generate(body_document(spec, language, media_id=media_id, endpoint=endpoint))


def body_document(
    spec: CampaignTemplate,
    language: str | None = None,
    *,
    media_id: str | None = None,
    endpoint: str = MESSAGES,
) -> dict[Any, Any]:
    """The request body as a tree whose leaves are constants or a contact's values."""
    definition = spec.definitions[language or spec.language]
    template: dict[str, Any] = {"name": definition.name, "language": {"code": definition.language}}
    components = _components(spec, definition, media_id)
    if components:
        template["components"] = components
    document: dict[Any, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _TO,
        "type": "template",
        "biz_opaque_callback_data": _CALLBACK,
        "template": template,
    }
    if endpoint == MARKETING_MESSAGES:
        if spec.product_policy is not None:
            document["product_policy"] = spec.product_policy
        if spec.message_send_ttl_seconds is not None:
            document["message_send_ttl_seconds"] = spec.message_send_ttl_seconds
    return document


def _components(spec: CampaignTemplate, definition: TemplateDef, media_id: str | None) -> list[Any]:
    named = definition.named

    def value(key: str) -> Any:
        constant = spec.constants.get(key)
        return constant if constant is not None else _Text(spec.column(key))

    def present(key: str, node: Any) -> Any:
        """An optional value: constant, per contact (when given), or absent (None)."""
        if key in spec.constants:
            return node(spec.constants[key])
        return _Optional(spec.column(key), node(_Text(spec.column(key))))

    components: list[Any] = []
    header = definition.header
    if header is not None and header.format is HeaderFormat.TEXT and header.variables:
        parameter: dict[str, Any] = {"type": "text"}
        if named:
            parameter["parameter_name"] = header.variables[0]
        parameter["text"] = value("header.text")
        components.append({"type": "header", "parameters": [parameter]})
    elif header is not None and header.format in MEDIA_FORMATS:
        kind = media_kind(header.format)
        media: dict[str, Any]
        if spec.header_file is not None:
            if media_id is None:
                raise ValueError("the header file has no media id for this number yet")
            media = {"id": media_id}
        elif f"header.{kind}.id" in spec.constants:
            media = {"id": spec.constants[f"header.{kind}.id"]}
        else:
            media = {"link": value(f"header.{kind}.link")}
        if header.format is HeaderFormat.DOCUMENT:
            media["filename"] = present("header.document.filename", lambda v: v)
        components.append({"type": "header", "parameters": [{"type": kind, kind: media}]})
    elif header is not None and header.format is HeaderFormat.LOCATION:
        location: dict[str, Any] = {
            "latitude": value("header.location.latitude"),
            "longitude": value("header.location.longitude"),
            "name": present("header.location.name", lambda v: v),
            "address": present("header.location.address", lambda v: v),
        }
        components.append(
            {"type": "header", "parameters": [{"type": "location", "location": location}]}
        )
    otp_code: Any = None
    if definition.body is not None and definition.body.variables:
        parameters = []
        for variable in definition.body.variables:
            parameters.append(_body_parameter(spec, variable, named, value))
        otp_code = value(f"body.{definition.body.variables[0]}")
        components.append({"type": "body", "parameters": parameters})
    for button in definition.buttons:
        index = str(button.index)
        key = f"button.{index}"
        if button.type is ButtonType.URL and button.dynamic:
            components.append(_button("url", index, "text", value(f"{key}.url_suffix")))
        elif button.type is ButtonType.QUICK_REPLY:
            node = present(
                f"{key}.payload", lambda v, index=index: _button("quick_reply", index, "payload", v)
            )
            components.append(node)
        elif button.type is ButtonType.COPY_CODE:
            components.append(
                _button("copy_code", index, "coupon_code", value(f"{key}.coupon_code"))
            )
        elif button.type is ButtonType.OTP:
            components.append(_button("url", index, "text", otp_code))
    return components


def _body_parameter(
    spec: CampaignTemplate, variable: str, named: bool, value: Callable[[str], Any]
) -> dict[str, Any]:
    key = f"body.{variable}"
    value_type = spec.param_types.get(variable, ValueType.TEXT)
    parameter: dict[str, Any] = {"type": value_type.value}
    if named:
        parameter["parameter_name"] = variable
    if value_type is ValueType.TEXT:
        parameter["text"] = value(key)
    elif value_type is ValueType.DATE_TIME:
        parameter["date_time"] = {"fallback_value": value(key)}
    else:
        parameter["currency"] = _currency(spec, key)
    return parameter


def _currency(spec: CampaignTemplate, key: str) -> dict[str, Any]:
    constants = spec.constants
    amount, code = constants.get(f"{key}.amount"), constants.get(f"{key}.code")
    fallback: Any
    if f"{key}.fallback" in constants:
        fallback = constants[f"{key}.fallback"]
    elif amount is not None and code is not None:
        fallback = f"{amount} {code}"
    else:
        fallback = _Text(spec.column(f"{key}.fallback"))
    scaled: Any
    if amount is not None and code is not None:
        scaled = amount_1000(amount)
    else:  # per contact: the import stored amount_1000
        scaled = _Raw(f"{key}.amount_1000")
    return {
        "fallback_value": fallback,
        "code": code if code is not None else _Text(spec.column(f"{key}.code")),
        "amount_1000": scaled,
    }


def _button(sub_type: str, index: str, parameter_type: str, value: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "sub_type": sub_type,
        "index": index,
        "parameters": [{"type": parameter_type, parameter_type: value}],
    }


# -- code generation -----------------------------------------------------------------------


class _Emitter:
    """Turns a tree into the parts of one `b"".join(...)`: static fragments (merged) and
    expressions over `to`, `cb` and the contact's params `p`."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"d": orjson.dumps}
        self._count = 0

    def name(self, value: Any, prefix: str) -> str:
        name = f"{prefix}{self._count}"
        self._count += 1
        self.namespace[name] = value
        return name

    def parts(self, node: Any) -> list[bytes | str]:
        out: list[bytes | str] = []
        self._emit(node, out)
        return out

    def expression(self, parts: list[bytes | str]) -> str:
        merged: list[bytes | str] = []
        for part in parts:
            if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += part
            else:
                merged.append(part)
        names = [self.name(p, "S") if isinstance(p, bytes) else p for p in merged]
        if len(names) == 1:
            return names[0]
        return "b''.join((" + ", ".join(names) + ",))"

    def _emit(self, node: Any, out: list[bytes | str]) -> None:
        if node is _TO:
            out.append("d(to)")
        elif node is _CALLBACK:
            out.append("d(cb)")
        elif isinstance(node, _Text):
            out.append(f"d(p[{self.name(node.key, 'K')}])")
        elif isinstance(node, _Raw):
            out.append(f"p[{self.name(node.key, 'K')}].encode()")
        elif isinstance(node, dict):
            out.append(b"{")
            first = True
            for key, value in node.items():
                member: list[bytes | str] = [b"" if first else b",", orjson.dumps(key) + b":"]
                if isinstance(value, _Optional):
                    if first:
                        raise ValueError("an optional member cannot come first")
                    self._emit(value.node, member)
                    key_name = self.name(value.key, "K")
                    out.append(f"({self.expression(member)} if p.get({key_name}) else b'')")
                else:
                    self._emit(value, member)
                    out.extend(member)
                first = False
            out.append(b"}")
        elif isinstance(node, list):
            if any(isinstance(item, _Optional) for item in node):
                elements = []
                for item in node:
                    if isinstance(item, _Optional):
                        inner = self.expression(self.parts(item.node))
                        key_name = self.name(item.key, "K")
                        elements.append(f"({inner} if p.get({key_name}) else b'')")
                    else:
                        elements.append(self.expression(self.parts(item)))
                joined = "b','.join(filter(None, (" + ", ".join(elements) + ",)))"
                out += [b"[", joined, b"]"]
            else:
                out.append(b"[")
                for position, item in enumerate(node):
                    if position:
                        out.append(b",")
                    self._emit(item, out)
                out.append(b"]")
        else:
            out.append(orjson.dumps(node))


def language_dispatch(builders: Mapping[str, BodyBuilder], default: BodyBuilder) -> BodyBuilder:
    """One builder for a campaign in several languages: a contact imported with another
    language of the template (`params["language"]`) gets that language's body."""

    def build(to: str, params: Mapping[str, str], callback: str) -> bytes:
        language = params.get("language")
        chosen = builders.get(language, default) if language else default
        return chosen(to, params, callback)

    return build


def _generate(document: dict[Any, Any]) -> BodyBuilder:
    emitter = _Emitter()
    expression = emitter.expression(emitter.parts(document))
    source = f"def build(to, p, cb):\n    return {expression}\n"
    namespace = emitter.namespace
    # Named after this file, so that profiles (the sender's call budget) count it as ours.
    exec(compile(source, f"{__file__}:generated", "exec"), namespace)
    builder: BodyBuilder = namespace["build"]
    return builder
