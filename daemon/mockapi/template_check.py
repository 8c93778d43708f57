"""Does a send's body fit the template it names? The mock's check of a body against its
catalogue entry, answered with the error Meta gives: 132001 (no such template or language),
132000 (parameter count), 132012 (parameter format: type, name, button kind), 132018 (a
text with a newline, a tab or more than 4 spaces in a row), 131009 (a coupon or code too
long), 132015/132016 (paused, disabled), and 131055 (a template that is not MARKETING, on the
Marketing Messages API).

Written apart from the daemon's body builder (`core.template_build`), from Meta's rules; it
shares only the catalogue's model (`core.templates`).
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
from daemon.mockapi.catalogue import Catalogue
from daemon.mockapi.config import MockConfig
from daemon.mockapi.validation import RequestProblem

_BAD_TEXT = re.compile(r"[\n\r\t]| {5}")
CODE_MAX: Final = 15
_BUTTON_SUB_TYPE = {
    ButtonType.URL: ("url", "text"),
    ButtonType.OTP: ("url", "text"),
    ButtonType.QUICK_REPLY: ("quick_reply", "payload"),
    ButtonType.COPY_CODE: ("copy_code", "coupon_code"),
}


def send_template_problem(
    body: Any, catalogue: Catalogue, config: MockConfig, *, validated: bool, marketing: bool
) -> RequestProblem | None:
    """What the mock refuses in a send's template (None: nothing): the catalogue check when
    the body was `validated` against the schema (without validation a body may have any
    shape), then `configured_template_problem`."""
    template = body.get("template")
    name = template.get("name") if isinstance(template, dict) else None
    if not isinstance(name, str):
        return None
    if validated:
        try:
            problem = template_problem(template, catalogue, marketing_endpoint=marketing)
        except (KeyError, TypeError, AttributeError, IndexError):  # not the schema's shape
            problem = RequestProblem(100, "Invalid parameter template.")
        if problem is not None:
            return problem
    return configured_template_problem(template, config)


def configured_template_problem(
    template: Mapping[str, Any], config: MockConfig
) -> RequestProblem | None:
    """`--known-template` and `--expect-params`, when configured."""
    name = template["name"]
    known = config.known_templates
    if known is not None and name not in known:
        details = f"template name ({name}) does not exist in the translation"
        return RequestProblem(132001, details)
    expected = config.template_param_counts.get(name)
    if expected is None:
        return None
    got = sum(
        len(component.get("parameters") or [])
        for component in template.get("components") or []
        if isinstance(component, dict) and component.get("type") == "body"
    )
    if got != expected:
        return RequestProblem(
            132000,
            f"body: number of localizable_params ({got}) does not match the expected"
            f" number of params ({expected})",
        )
    return None


def template_problem(
    template: Mapping[str, Any], catalogue: Catalogue, *, marketing_endpoint: bool = False
) -> RequestProblem | None:
    """Why the body's `template` object does not fit its catalogue entry (None: it fits, or
    the catalogue does not know the name and is not strict). The body passed the schema."""
    name = template["name"]
    versions = catalogue.by_name.get(name)
    if versions is None:
        if catalogue.strict:
            return RequestProblem(
                132001, f"template name ({name}) does not exist in the translation"
            )
        return None
    code = template["language"]["code"]
    definition = versions.get(code)
    if definition is None:
        return RequestProblem(132001, f"template name ({name}) does not exist in {code}")
    status = definition.status
    if status != "APPROVED":
        if status == "PAUSED":
            return RequestProblem(132015, f"template {name} is paused")
        if status == "DISABLED":
            return RequestProblem(132016, f"template {name} is disabled")
        return RequestProblem(132001, f"template name ({name}) is {status}, not approved")
    if marketing_endpoint and definition.category != MARKETING:
        return RequestProblem(
            131055,
            f"Only marketing template messages are supported on this endpoint ({name} is"
            f" {definition.category or 'uncategorised'})",
        )
    headers, bodies, buttons = [], [], {}
    for component in template.get("components") or []:
        kind = component["type"]
        if kind == "header":
            headers.append(component)
        elif kind == "body":
            bodies.append(component)
        else:
            index = component.get("index")
            if index in buttons:
                return RequestProblem(100, f"button index {index} given twice")
            buttons[index] = component
    if len(headers) > 1 or len(bodies) > 1:
        return RequestProblem(100, "a component type given twice")
    return (
        _header_problem(definition, headers[0] if headers else None)
        or _body_problem(definition, bodies[0] if bodies else None)
        or _buttons_problem(definition, buttons, bodies[0] if bodies else None)
    )


def _count(where: str, got: int, expected: int) -> RequestProblem:
    return RequestProblem(
        132000,
        f"{where}: number of localizable_params ({got}) does not match the expected number"
        f" of params ({expected})",
    )


def _format(details: str) -> RequestProblem:
    return RequestProblem(132012, details)


def _text_problem(where: str, text: object) -> RequestProblem | None:
    if isinstance(text, str) and _BAD_TEXT.search(text):
        return RequestProblem(
            132018,
            f"{where}: Param text cannot have new-line/tab characters or more than 4"
            " consecutive spaces",
        )
    return None


def _header_problem(
    definition: TemplateDef, header: Mapping[str, Any] | None
) -> RequestProblem | None:
    spec = definition.header
    parameters = (header or {}).get("parameters") or []
    wants = 0
    if spec is not None:
        wants = 0 if spec.format is HeaderFormat.TEXT and not spec.variables else 1
    if len(parameters) != wants:
        return _count("header", len(parameters), wants)
    if not wants:
        return None
    assert spec is not None
    parameter = parameters[0]
    kind = parameter["type"]
    expected = "text" if spec.format is HeaderFormat.TEXT else spec.format.value.lower()
    if kind != expected:
        return _format(
            f"header: Format mismatch, expected {spec.format.value}, received {kind.upper()}"
        )
    if spec.format is HeaderFormat.TEXT:
        name_problem = _name_problem(definition, "header", parameter, spec.variables[0])
        return name_problem or _text_problem("header", parameter.get("text"))
    if spec.format in MEDIA_FORMATS:
        media = parameter[kind]
        link = media.get("link")
        if link is not None and not str(link).startswith(("https://", "http://")):
            return RequestProblem(131009, "header: media link must be an http(s) URL")
    return None


def _name_problem(
    definition: TemplateDef, where: str, parameter: Mapping[str, Any], expected: str | None
) -> RequestProblem | None:
    given = parameter.get("parameter_name")
    if definition.named:
        if given is None:
            return _format(f"{where}: parameter_name is required for NAMED templates")
        if given != expected:
            return _format(f"{where}: unknown parameter_name {given!r}")
    elif given is not None:
        return _format(f"{where}: parameter_name given for a POSITIONAL template")
    return None


def _body_problem(definition: TemplateDef, body: Mapping[str, Any] | None) -> RequestProblem | None:
    variables = definition.body.variables if definition.body is not None else ()
    parameters = (body or {}).get("parameters") or []
    if len(parameters) != len(variables):
        return _count("body", len(parameters), len(variables))
    seen: set[str] = set()
    for position, parameter in enumerate(parameters):
        kind = parameter["type"]
        if kind not in ("text", "currency", "date_time"):
            return _format(f"body: parameter type {kind} is not allowed in the body")
        if definition.named:
            name = parameter.get("parameter_name")
            if name not in variables or name in seen:
                shown = "missing" if name is None else repr(name)
                return _format(f"body: parameter_name {shown} does not match the template")
            seen.add(name)
        elif parameter.get("parameter_name") is not None:
            return _format("body: parameter_name given for a POSITIONAL template")
        value = parameter[kind]
        text = value if kind == "text" else value.get("fallback_value")
        problem = _text_problem("body", text)
        if problem is not None:
            return problem
        if definition.otp_button is not None and position == 0 and len(str(text)) > CODE_MAX:
            return RequestProblem(131009, "body: the one-time password is over 15 characters")
    return None


def _buttons_problem(
    definition: TemplateDef, given: Mapping[Any, Mapping[str, Any]], body: Any
) -> RequestProblem | None:
    by_index = {str(b.index): b for b in definition.buttons}
    for index, component in given.items():
        button = by_index.get(index)
        if button is None or not button.takes_parameter:
            return _count(f"button {index}", len(component.get("parameters") or []), 0)
        sub_type, parameter_type = _BUTTON_SUB_TYPE[button.type]
        if component["sub_type"] != sub_type:
            return _format(
                f"button {index}: sub_type {component['sub_type']} does not match its"
                f" {button.type.value} button"
            )
        parameters = component["parameters"]
        if len(parameters) != 1:
            return _count(f"button {index}", len(parameters), 1)
        parameter = parameters[0]
        if parameter["type"] != parameter_type:
            return _format(f"button {index}: expected a {parameter_type} parameter")
        value = parameter[parameter_type]
        if button.type in (ButtonType.COPY_CODE, ButtonType.OTP) and len(value) > CODE_MAX:
            return RequestProblem(131009, f"button {index}: code over {CODE_MAX} characters")
    for button in definition.buttons:
        required = button.type in (ButtonType.COPY_CODE, ButtonType.OTP) or (
            button.type is ButtonType.URL and button.dynamic
        )
        if required and str(button.index) not in given:
            return _count(f"button {button.index}", 0, 1)
    return None
