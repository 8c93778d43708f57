"""The model of a message template as Meta's catalogue describes it: header, body, buttons, and
the variables each one takes.

Pure: parsed from the JSON of `GET /{waba_id}/message_templates` (or a `--template-file` of the
same shape). What a campaign must supply for each variable (the CSV columns and campaign
constants, by our naming convention) is `core.template_spec`; checking one contact's values
is `core.template_check`; turning them into a request body is `core.template_build`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

APPROVED: Final = "APPROVED"
MARKETING: Final = "MARKETING"
AUTHENTICATION: Final = "AUTHENTICATION"

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_NAMED_VARIABLE = re.compile(r"[a-z][a-z0-9_]*")


class TemplateError(ValueError):
    """A template that cannot be used as given (malformed, unsupported, or not fitting)."""


class ParameterFormat(StrEnum):
    """How a template's variables are written: `{{1}}` or `{{first_name}}`."""

    POSITIONAL = "POSITIONAL"
    NAMED = "NAMED"


class HeaderFormat(StrEnum):
    """What a header shows."""

    TEXT = "TEXT"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    DOCUMENT = "DOCUMENT"
    LOCATION = "LOCATION"


MEDIA_FORMATS: Final = frozenset({HeaderFormat.IMAGE, HeaderFormat.VIDEO, HeaderFormat.DOCUMENT})


class ButtonType(StrEnum):
    """The button kinds a template may have; the first four take a parameter when sent."""

    URL = "URL"
    QUICK_REPLY = "QUICK_REPLY"
    COPY_CODE = "COPY_CODE"
    OTP = "OTP"
    PHONE_NUMBER = "PHONE_NUMBER"
    VOICE_CALL = "VOICE_CALL"


# Buttons that need a parameter wa-sender has no value model for (yet): refused at create.
UNSUPPORTED_BUTTONS: Final = frozenset({"FLOW", "CATALOG", "MPM", "SPM", "ORDER_DETAILS"})
UNSUPPORTED_COMPONENTS: Final = frozenset({"CAROUSEL", "LIMITED_TIME_OFFER"})


class OtpType(StrEnum):
    """Authentication buttons: all three are sent the same way (Meta: the code goes in the body
    parameter and in the button's url parameter), they differ on the phone."""

    COPY_CODE = "COPY_CODE"
    ONE_TAP = "ONE_TAP"
    ZERO_TAP = "ZERO_TAP"


@dataclass(frozen=True)
class Header:
    """A template's header: its format, and for TEXT its text and variable (at most one)."""

    format: HeaderFormat
    text: str | None = None
    variables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Body:
    """A template's body text and its variables, in the order the request lists them."""

    text: str
    variables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Button:
    """One button, by its index (its position among the template's buttons)."""

    index: int
    type: ButtonType
    text: str = ""
    url: str | None = None
    dynamic: bool = False  # a URL button whose url ends in a variable
    otp_type: OtpType | None = None

    @property
    def takes_parameter(self) -> bool:
        """Whether a send may (quick reply) or must (the others) carry a parameter for it."""
        return (
            self.type in (ButtonType.COPY_CODE, ButtonType.OTP, ButtonType.QUICK_REPLY)
            or self.dynamic
        )


@dataclass(frozen=True)
class TemplateDef:
    """One template in one language, as the catalogue knows it."""

    name: str
    language: str
    status: str
    category: str
    parameter_format: ParameterFormat
    header: Header | None
    body: Body | None
    buttons: tuple[Button, ...]
    id: str | None = None

    @property
    def approved(self) -> bool:
        """Whether it may be sent."""
        return self.status == APPROVED

    @property
    def named(self) -> bool:
        """Whether its variables are named (`parameter_name` in the request)."""
        return self.parameter_format is ParameterFormat.NAMED

    @property
    def otp_button(self) -> Button | None:
        """The authentication button, if the template has one."""
        return next((b for b in self.buttons if b.type is ButtonType.OTP), None)

    def describe(self) -> str:
        """`name (language)`, as messages name it."""
        return f"{self.name} ({self.language})"


def variables_in(text: str, parameter_format: ParameterFormat, where: str) -> tuple[str, ...]:
    """The distinct variables of a text, in request order: numeric order for `{{1}}`..,
    first appearance for named ones. TemplateError when a variable has the wrong form."""
    found: list[str] = []
    for match in _VARIABLE.finditer(text):
        name = match.group(1)
        if name not in found:
            found.append(name)
    if parameter_format is ParameterFormat.POSITIONAL:
        if not all(name.isdigit() for name in found):
            raise TemplateError(f"{where}: POSITIONAL template with a named variable {found}")
        ordered = sorted(found, key=int)
        if ordered != [str(i) for i in range(1, len(ordered) + 1)]:
            raise TemplateError(f"{where}: variables must be {{{{1}}}}..{{{{{len(ordered)}}}}}")
        return tuple(ordered)
    for name in found:
        if not _NAMED_VARIABLE.fullmatch(name):
            raise TemplateError(f"{where}: named variable {{{{{name}}}}} must be lowercase")
    return tuple(found)


def parse_template(document: Mapping[str, Any]) -> TemplateDef:
    """A template from Meta's JSON (`message_templates` entry); TemplateError if malformed."""
    name = document.get("name")
    language = document.get("language")
    if not isinstance(name, str) or not name:
        raise TemplateError("template without a name")
    if not isinstance(language, str) or not language:
        raise TemplateError(f"template {name}: no language")
    where = f"template {name} ({language})"
    raw_format = str(document.get("parameter_format") or "POSITIONAL").upper()
    try:
        parameter_format = ParameterFormat(raw_format)
    except ValueError:
        raise TemplateError(f"{where}: unknown parameter_format {raw_format!r}") from None
    components = document.get("components") or []
    if not isinstance(components, list):
        raise TemplateError(f"{where}: components must be a list")
    header: Header | None = None
    body: Body | None = None
    buttons: tuple[Button, ...] = ()
    for component in components:
        if not isinstance(component, Mapping):
            raise TemplateError(f"{where}: a component is not an object")
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            header = _header(component, parameter_format, where)
        elif kind == "BODY":
            text = component.get("text")
            text = text if isinstance(text, str) else ""
            body = Body(text, variables_in(text, parameter_format, f"{where} body"))
        elif kind == "BUTTONS":
            buttons = _buttons(component.get("buttons"), where)
        elif kind in UNSUPPORTED_COMPONENTS:
            raise TemplateError(f"{where}: {kind} components are not supported")
        elif kind != "FOOTER":
            raise TemplateError(f"{where}: unknown component type {kind!r}")
    category = str(document.get("category") or "").upper()
    if any(b.type is ButtonType.OTP for b in buttons) and body is None:
        raise TemplateError(f"{where}: an OTP button needs the body's code variable")
    template_id = document.get("id")
    return TemplateDef(
        name=name,
        language=language,
        status=str(document.get("status") or "").upper(),
        category=category,
        parameter_format=parameter_format,
        header=header,
        body=body,
        buttons=buttons,
        id=str(template_id) if template_id is not None else None,
    )


def _header(component: Mapping[str, Any], parameter_format: ParameterFormat, where: str) -> Header:
    raw = str(component.get("format") or "TEXT").upper()
    try:
        header_format = HeaderFormat(raw)
    except ValueError:
        raise TemplateError(f"{where}: unsupported header format {raw!r}") from None
    if header_format is not HeaderFormat.TEXT:
        return Header(header_format)
    text = component.get("text")
    text = text if isinstance(text, str) else ""
    variables = variables_in(text, parameter_format, f"{where} header")
    if len(variables) > 1:
        raise TemplateError(f"{where}: a text header takes one variable, not {len(variables)}")
    return Header(header_format, text, variables)


def _buttons(raw: object, where: str) -> tuple[Button, ...]:
    if not isinstance(raw, list):
        raise TemplateError(f"{where}: BUTTONS without a buttons list")
    out: list[Button] = []
    for index, button in enumerate(raw):
        if not isinstance(button, Mapping):
            raise TemplateError(f"{where}: button {index} is not an object")
        kind = str(button.get("type", "")).upper()
        if kind in UNSUPPORTED_BUTTONS:
            raise TemplateError(f"{where}: button {index} is a {kind} button (not supported)")
        try:
            button_type = ButtonType(kind)
        except ValueError:
            raise TemplateError(f"{where}: button {index} has unknown type {kind!r}") from None
        text = button.get("text")
        text = text if isinstance(text, str) else ""
        url = button.get("url")
        url = url if isinstance(url, str) else None
        otp_type: OtpType | None = None
        if button_type is ButtonType.OTP:
            raw_otp = str(button.get("otp_type") or "COPY_CODE").upper()
            try:
                otp_type = OtpType(raw_otp)
            except ValueError:
                raise TemplateError(
                    f"{where}: button {index}: unknown otp_type {raw_otp}"
                ) from None
        dynamic = False
        if button_type is ButtonType.URL and url is not None:
            variables = [m.group(1) for m in _VARIABLE.finditer(url)]
            if len(variables) > 1 or (variables and not url.rstrip().endswith("}}")):
                raise TemplateError(f"{where}: button {index}: one variable at the url's end")
            dynamic = bool(variables)
        out.append(Button(index, button_type, text, url, dynamic, otp_type))
    return tuple(out)


def parse_catalogue(document: object) -> list[TemplateDef]:
    """Templates from a `--template-file` or `--templates` file: one template object, a list
    of them, or a `message_templates` page (`{"data": [...]}`)."""
    if isinstance(document, Mapping) and "data" in document:
        document = document["data"]
    entries: Sequence[object]
    if isinstance(document, Mapping):
        entries = [document]
    elif isinstance(document, list):
        entries = document
    else:
        raise TemplateError('expected a template object, a list of them, or {"data": [...]}')
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise TemplateError("a template entry is not an object")
        out.append(parse_template(entry))
    return out


def find_template(
    templates: Iterable[TemplateDef], name: str, language: str
) -> tuple[TemplateDef | None, list[TemplateDef]]:
    """The entry of `name` in `language` (None if absent) and every entry of that name."""
    same_name = [t for t in templates if t.name == name]
    exact = next((t for t in same_name if t.language == language), None)
    return exact, same_name


def check_usable(
    found: TemplateDef | None, same_name: Sequence[TemplateDef], name: str, language: str
) -> TemplateDef:
    """The catalogue entry a campaign may be created from, else TemplateError (one line)."""
    if found is None:
        if not same_name:
            raise TemplateError(f"template {name!r} is not in the catalogue")
        languages = ", ".join(sorted(t.language for t in same_name))
        raise TemplateError(f"template {name!r} has no {language} version (it has: {languages})")
    if not found.approved:
        raise TemplateError(
            f"template {found.describe()} is {found.status or 'of unknown status'}, not APPROVED"
        )
    return found


def legacy_template(name: str, language: str, body_columns: int) -> TemplateDef:
    """A template known only by name (no catalogue): a positional body of that many
    variables, nothing else; today's `--param` campaigns."""
    variables = tuple(str(i) for i in range(1, body_columns + 1))
    body = Body(" ".join(f"{{{{{v}}}}}" for v in variables), variables) if variables else None
    return TemplateDef(
        name=name,
        language=language,
        status="",
        category="",
        parameter_format=ParameterFormat.POSITIONAL,
        header=None,
        body=body,
        buttons=(),
    )


def template_document(template: TemplateDef) -> dict[str, Any]:
    """The template in Meta's `message_templates` shape (what `parse_template` reads back)."""
    components: list[dict[str, Any]] = []
    if template.header is not None:
        header: dict[str, Any] = {"type": "HEADER", "format": template.header.format.value}
        if template.header.text is not None:
            header["text"] = template.header.text
        components.append(header)
    if template.body is not None:
        components.append({"type": "BODY", "text": template.body.text})
    if template.buttons:
        buttons = []
        for button in template.buttons:
            entry: dict[str, Any] = {"type": button.type.value}
            if button.text:
                entry["text"] = button.text
            if button.url is not None:
                entry["url"] = button.url
            if button.otp_type is not None:
                entry["otp_type"] = button.otp_type.value
            buttons.append(entry)
        components.append({"type": "BUTTONS", "buttons": buttons})
    document: dict[str, Any] = {
        "name": template.name,
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "parameter_format": template.parameter_format.value,
        "components": components,
    }
    if template.id is not None:
        document["id"] = template.id
    return document
