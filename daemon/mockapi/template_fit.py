"""The mock's fast lane for template bodies: one pass, compiled per catalogue entry, that
accepts a template object only when it is certainly valid for the (patched) schema AND fits
its template (`mockapi.template_check`). Anything else, a refusal included, goes to the full
path, which finds the exact error. A test checks it never accepts what that path refuses.

Why: the richest template has five components and eight parameters; the generic fast path
plus the full template check cost the mock 18 us a send, on the same cores as the sender it
measures. Compiled, the check is a few dict lookups per parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from daemon.core.templates import (
    MARKETING,
    MEDIA_FORMATS,
    ButtonType,
    HeaderFormat,
    TemplateDef,
)

_BAD_TEXT = re.compile(r"[\n\r\t]| {5}")
TEXT_MAX: Final = 32768
CODE_MAX: Final = 15
_TEMPLATE_KEYS = frozenset(("name", "language", "components"))
_LANGUAGE_KEYS = frozenset(("code", "policy"))
_COMPONENT_KEYS = frozenset(("type", "parameters"))
_BUTTON_KEYS = frozenset(("type", "sub_type", "index", "parameters"))
_CURRENCY_KEYS = frozenset(("fallback_value", "code", "amount_1000"))
_LOCATION_KEYS = frozenset(("latitude", "longitude", "name", "address"))
_PARAM_KEYS = frozenset(("type", "text"))
_NAMED_KEYS = frozenset(("type", "text", "parameter_name"))


class TemplateFit:
    """`fits(template_object, marketing)`: True only for a body sure to be accepted."""

    def __init__(self, definition: TemplateDef) -> None:
        self.category_marketing = definition.category == MARKETING
        self.named = definition.named
        header = definition.header
        self.header_kind: str | None = None
        self.header_name: str | None = None
        if header is not None:
            if header.format is HeaderFormat.TEXT and header.variables:
                self.header_kind = "text"
                self.header_name = header.variables[0] if self.named else None
            elif header.format in MEDIA_FORMATS or header.format is HeaderFormat.LOCATION:
                self.header_kind = header.format.value.lower()
        self.document = header is not None and header.format is HeaderFormat.DOCUMENT
        self.body_vars = definition.body.variables if definition.body is not None else ()
        self.body_names = frozenset(self.body_vars)
        self.otp = definition.otp_button is not None
        self.buttons: dict[str, tuple[str, str, int | None]] = {}
        required = []
        for button in definition.buttons:
            index = str(button.index)
            if len(index) != 1:
                continue  # the schema's index is one digit: never fast
            if button.type is ButtonType.URL and button.dynamic:
                self.buttons[index] = ("url", "text", None)
                required.append(index)
            elif button.type is ButtonType.OTP:
                self.buttons[index] = ("url", "text", CODE_MAX)
                required.append(index)
            elif button.type is ButtonType.COPY_CODE:
                self.buttons[index] = ("copy_code", "coupon_code", CODE_MAX)
                required.append(index)
            elif button.type is ButtonType.QUICK_REPLY:
                self.buttons[index] = ("quick_reply", "payload", None)
        self.required_buttons = frozenset(required)
        self._canonical = _compile_canonical(self, definition)

    def fits(self, template: Mapping[str, Any], marketing: bool) -> bool:
        """Whether the `template` object is valid and fits (False: ask the full path)."""
        canonical = self._canonical
        if canonical is not None and canonical(template, marketing):
            return True
        return self._fits(template, marketing)

    def _fits(self, template: Mapping[str, Any], marketing: bool) -> bool:
        """`fits`, for components in any order and optional buttons left out."""
        if marketing and not self.category_marketing:
            return False
        if not template.keys() <= _TEMPLATE_KEYS:
            return False
        language = template["language"]
        if not language.keys() <= _LANGUAGE_KEYS or (
            "policy" in language and language["policy"] != "deterministic"
        ):
            return False
        components = template.get("components", ())
        if type(components) is not list:
            return False
        header = body = None
        buttons: dict[str, Any] = {}
        for component in components:
            if type(component) is not dict:
                return False
            kind = component.get("type")
            if kind == "body" and body is None:
                body = component
            elif kind == "header" and header is None:
                header = component
            elif kind == "button":
                index = component.get("index")
                if type(index) is not str or index in buttons:
                    return False
                buttons[index] = component
            else:
                return False
        texts: list[str] = []
        if not (
            self._header_fits(header, texts)
            and self._body_fits(body, texts)
            and self._buttons_fit(buttons)
        ):
            return False
        # Every rendered text at once: the 132018 rule and the length limit.
        for text in texts:
            if type(text) is not str or len(text) > TEXT_MAX:
                return False
        return not _BAD_TEXT.search("\x00".join(texts))

    def _header_fits(self, header: Any, texts: list[str]) -> bool:
        kind = self.header_kind
        if kind is None:
            return header is None
        if header is None or header.keys() != _COMPONENT_KEYS:
            return False
        parameters = header["parameters"]
        if type(parameters) is not list or len(parameters) != 1:
            return False
        parameter = parameters[0]
        if type(parameter) is not dict or parameter.get("type") != kind:
            return False
        if kind == "text":
            if self.header_name is None:
                if parameter.keys() != _PARAM_KEYS:
                    return False
            elif parameter.keys() != _NAMED_KEYS or parameter["parameter_name"] != self.header_name:
                return False
            texts.append(parameter["text"])
            return True
        if len(parameter) != 2:
            return False
        value = parameter[kind]
        if type(value) is not dict:
            return False
        if kind == "location":
            return (
                "latitude" in value
                and "longitude" in value
                and value.keys() <= _LOCATION_KEYS
                and all(type(v) is str for v in value.values())
            )
        link, media_id = value.get("link"), value.get("id")
        extra = len(value) - 1
        if self.document and "filename" in value:
            if type(value["filename"]) is not str:
                return False
            extra -= 1
        if extra:
            return False
        if link is not None:
            return type(link) is str and link.startswith(("https://", "http://"))
        return type(media_id) is str

    def _body_fits(self, body: Any, texts: list[str]) -> bool:
        variables = self.body_vars
        if not variables:
            return body is None
        if body is None or body.keys() != _COMPONENT_KEYS:
            return False
        parameters = body["parameters"]
        if type(parameters) is not list or len(parameters) != len(variables):
            return False
        named = self.named
        size = 3 if named else 2
        if named:
            names = {p.get("parameter_name") for p in parameters if type(p) is dict}
            if names != self.body_names:  # each variable once (the count is already equal)
                return False
        for parameter in parameters:
            if type(parameter) is not dict or len(parameter) != size:
                return False
            kind = parameter.get("type")
            if kind == "text":
                texts.append(parameter.get("text"))  # type: ignore[arg-type]
            elif kind == "date_time":
                value = parameter.get("date_time")
                if type(value) is not dict or len(value) != 1:
                    return False
                texts.append(value.get("fallback_value"))  # type: ignore[arg-type]
            elif kind == "currency":
                value = parameter.get("currency")
                if (
                    type(value) is not dict
                    or value.keys() != _CURRENCY_KEYS
                    or type(value["code"]) is not str
                    or type(value["amount_1000"]) is not int
                ):
                    return False
                texts.append(value["fallback_value"])
            else:
                return False
        if self.otp:
            first = parameters[0]
            text = first.get("text")
            return first.get("type") == "text" and type(text) is str and len(text) <= CODE_MAX
        return True

    def _buttons_fit(self, buttons: dict[str, Any]) -> bool:
        for index, component in buttons.items():
            expected = self.buttons.get(index)
            if expected is None or component.keys() != _BUTTON_KEYS:
                return False
            sub_type, parameter_type, max_length = expected
            if component["sub_type"] != sub_type:
                return False
            parameters = component["parameters"]
            if type(parameters) is not list or len(parameters) != 1:
                return False
            parameter = parameters[0]
            if (
                type(parameter) is not dict
                or len(parameter) != 2
                or parameter.get("type") != parameter_type
            ):
                return False
            value = parameter.get(parameter_type)
            if type(value) is not str or (max_length is not None and len(value) > max_length):
                return False
        return self.required_buttons <= buttons.keys()


_NAMESPACE: Final[Mapping[str, Any]] = {
    "TK": _TEMPLATE_KEYS,
    "LK": _LANGUAGE_KEYS,
    "CK": _COMPONENT_KEYS,
    "BK": _BUTTON_KEYS,
    "CUK": _CURRENCY_KEYS,
    "LOCK": _LOCATION_KEYS,
    "PK": _PARAM_KEYS,
    "NK": _NAMED_KEYS,
    "HT": ("https://", "http://"),
    "BAD": _BAD_TEXT,
}


def _compile_canonical(fit: TemplateFit, definition: TemplateDef) -> Any:
    """`fits` for the body as Meta documents it and wa-sender builds it: header, body (its
    variables in order), then every button that takes a parameter, by index. Generated code,
    one straight pass; None when the template has no such shape. Names and other values of
    the template are constants of the namespace, never source text."""
    namespace: dict[str, Any] = dict(_NAMESPACE)
    out = ["def fits(t, marketing):"]

    def line(text: str, depth: int = 1) -> None:
        out.append("    " * depth + text)

    def constant(value: Any) -> str:
        name = f"C{len(namespace)}"
        namespace[name] = value
        return name

    buttons = sorted((int(i), spec) for i, spec in fit.buttons.items())
    count = (fit.header_kind is not None) + bool(fit.body_vars) + len(buttons)
    if count == 0:
        return None
    if not fit.category_marketing:
        line("if marketing: return False")
    line("if not t.keys() <= TK: return False")
    line("lg = t['language']")
    line("if not lg.keys() <= LK or ('policy' in lg and lg['policy'] != 'deterministic'):")
    line("return False", 2)
    line("c = t.get('components')")
    line(f"if type(c) is not list or len(c) != {count}: return False")
    texts: list[str] = []
    position = 0
    kind = fit.header_kind
    if kind is not None:
        line(f"x = c[{position}]")
        line("if type(x) is not dict or x.keys() != CK or x['type'] != 'header': return False")
        line("ps = x['parameters']")
        line("if type(ps) is not list or len(ps) != 1: return False")
        line("p = ps[0]")
        if kind == "text":
            if fit.header_name is None:
                line("if type(p) is not dict or p.keys() != PK or p['type'] != 'text':")
            else:
                name = constant(fit.header_name)
                line(
                    f"if type(p) is not dict or p.keys() != NK or p['type'] != 'text'"
                    f" or p['parameter_name'] != {name}:"
                )
            line("return False", 2)
            line("h = p['text']")
            texts.append("h")
        elif kind == "location":
            line("if type(p) is not dict or len(p) != 2 or p.get('type') != 'location':")
            line("return False", 2)
            line("v = p['location']")
            line(
                "if type(v) is not dict or 'latitude' not in v or 'longitude' not in v"
                " or not v.keys() <= LOCK: return False"
            )
            line("for s in v.values():")
            line("if type(s) is not str: return False", 2)
        else:
            media = constant(kind)
            line(f"if type(p) is not dict or len(p) != 2 or p.get('type') != {media}:")
            line("return False", 2)
            line(f"v = p.get({media})")
            line("if type(v) is not dict: return False")
            line("n = len(v)")
            if fit.document:
                line("if 'filename' in v:")
                line("if type(v['filename']) is not str: return False", 2)
                line("n -= 1", 2)
            line("if n != 1: return False")
            line("m = v.get('link')")
            line("if m is None:")
            line("if type(v.get('id')) is not str: return False", 2)
            line("elif type(m) is not str or not m.startswith(HT): return False")
        position += 1
    if fit.body_vars:
        size = 3 if fit.named else 2
        line(f"x = c[{position}]")
        line("if type(x) is not dict or x.keys() != CK or x['type'] != 'body': return False")
        line("ps = x['parameters']")
        line(f"if type(ps) is not list or len(ps) != {len(fit.body_vars)}: return False")
        for j, variable in enumerate(fit.body_vars):
            line(f"p = ps[{j}]")
            line(f"if type(p) is not dict or len(p) != {size}: return False")
            if fit.named:
                line(f"if p.get('parameter_name') != {constant(variable)}: return False")
            line("k = p.get('type')")
            line(f"if k == 'text': b{j} = p.get('text')")
            line("elif k == 'date_time':")
            line("v = p.get('date_time')", 2)
            line("if type(v) is not dict or len(v) != 1: return False", 2)
            line(f"b{j} = v.get('fallback_value')", 2)
            line("elif k == 'currency':")
            line("v = p.get('currency')", 2)
            line(
                "if type(v) is not dict or v.keys() != CUK or type(v['code']) is not str"
                " or type(v['amount_1000']) is not int: return False",
                2,
            )
            line(f"b{j} = v['fallback_value']", 2)
            line("else: return False")
            texts.append(f"b{j}")
        if fit.otp:
            line(
                f"if ps[0].get('type') != 'text' or type(b0) is not str"
                f" or len(b0) > {CODE_MAX}: return False"
            )
        position += 1
    for index, (sub_type, parameter_type, max_length) in buttons:
        line(f"x = c[{position}]")
        line(
            f"if type(x) is not dict or x.keys() != BK or x['type'] != 'button'"
            f" or x['index'] != {constant(str(index))} or x['sub_type'] != {constant(sub_type)}:"
        )
        line("return False", 2)
        line("ps = x['parameters']")
        line("if type(ps) is not list or len(ps) != 1: return False")
        line("p = ps[0]")
        kind_name = constant(parameter_type)
        line(f"if type(p) is not dict or len(p) != 2 or p.get('type') != {kind_name}:")
        line("return False", 2)
        line(f"s = p.get({kind_name})")
        limit = f" or len(s) > {max_length}" if max_length is not None else ""
        line(f"if type(s) is not str{limit}: return False")
        position += 1
    for text in texts:
        line(f"if type({text}) is not str or len({text}) > {TEXT_MAX}: return False")
    if texts:
        line(f"return not BAD.search('\\x00'.join(({', '.join(texts)},)))")
    else:
        line("return True")
    source = "\n".join(out) + "\n"
    exec(compile(source, f"<fit {definition.name} {definition.language}>", "exec"), namespace)
    return namespace["fits"]
