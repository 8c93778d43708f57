"""What a campaign supplies for each variable of its template, and how it is bound.

The naming convention (also in the README and printed by `wa-sender templates show`): every
value a template needs has a key, which is both the CSV column that carries it per contact
and the name of a campaign constant (`campaign create --set KEY=VALUE`, same for everyone):

    header.text                          a TEXT header's variable (at most 60 characters)
    header.image.link | .video. | .document.   the media's https URL (or --set ...id=MEDIA_ID,
                                          or --header-file FILE, uploaded by the daemon)
    header.document.filename             optional, the name the document is shown with
    header.location.latitude, .longitude required; header.location.name, .address optional
    body.1, body.2 ... | body.first_name a body variable, by number or by name (text, or
                                          date_time with --param-type first_name=date_time)
    body.V.amount, body.V.code           a currency variable (--param-type V=currency): the
                                          amount (12.50) and its ISO 4217 code;
    body.V.fallback                      optional, the text shown (default "12.50 EUR")
    button.N.url_suffix                  the end of a dynamic URL button's url (N: its index)
    button.N.payload                     optional, a quick-reply button's payload
    button.N.coupon_code                 a copy-code button's coupon (at most 15 characters)

An authentication (OTP) button needs nothing of its own: Meta wants the code twice, and the
body's first variable (body.1) is sent for the button too. `--param COL` (repeatable) keeps
mapping the body's variables, in order, to the CSV columns named.

How a binding is stored and checked again against the catalogue is `core.template_stored`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from daemon.core.templates import (
    MARKETING,
    MEDIA_FORMATS,
    ButtonType,
    HeaderFormat,
    TemplateDef,
    TemplateError,
)

BODY_PARAM_MAX: Final = 32768
HEADER_TEXT_MAX: Final = 60
CODE_MAX: Final = 15  # copy-code coupons and one-time passwords
URL_MAX: Final = 2000
FILENAME_MAX: Final = 240
LANGUAGE_COLUMN: Final = "language"
PRODUCT_POLICIES: Final = ("CLOUD_API_FALLBACK", "STRICT")
# Meta's customisable TTL range for marketing templates sent through the Marketing Messages API.
MARKETING_TTL_RANGE_S: Final = (43_200, 2_592_000)
# What Meta accepts per media kind (Cloud API media types and sizes).
MEDIA_TYPES: Final[Mapping[str, tuple[frozenset[str], int]]] = {
    "image": (frozenset({"image/jpeg", "image/png"}), 5 * 1024**2),
    "video": (frozenset({"video/mp4", "video/3gpp"}), 16 * 1024**2),
    "document": (
        frozenset(
            {
                "application/pdf",
                "text/plain",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            }
        ),
        100 * 1024**2,
    ),
}


class ValueType(StrEnum):
    """The wire type a body variable is sent as."""

    TEXT = "text"
    CURRENCY = "currency"
    DATE_TIME = "date_time"


class Check(StrEnum):
    """How one value is checked (at import for columns, at create for constants)."""

    TEXT = "text"  # rendered text: no newline, tab or 5 spaces in a row (132018); a length
    URL = "url"  # an https URL
    URL_SUFFIX = "url_suffix"  # the end of a URL: no whitespace
    MEDIA_ID = "media_id"
    FILENAME = "filename"
    AMOUNT = "amount"  # a decimal number, at most 3 decimals
    CURRENCY_CODE = "currency_code"  # ISO 4217: three letters
    LATITUDE = "latitude"
    LONGITUDE = "longitude"
    CODE = "code"  # a coupon or one-time password: no whitespace, at most 15
    PAYLOAD = "payload"  # any text


class TemplateSource(StrEnum):
    """Where a campaign's template came from: the synced catalogue (verified against Meta's
    account), a `--template-file`, or only its name (today's `--param` campaigns)."""

    CATALOGUE = "catalogue"
    FILE = "file"
    UNVERIFIED = "unverified"


@dataclass(frozen=True)
class Slot:
    """One value a template needs, by its key (column name and constant name)."""

    key: str
    check: Check
    required: bool = True
    max_length: int | None = None
    help: str = ""
    constant_only: bool = False  # only as `--set` (a media id), never a column


@dataclass(frozen=True)
class HeaderFile:
    """A campaign-level media file for the header (its bytes live in the database)."""

    filename: str
    mime_type: str
    size: int


def media_kind(header_format: HeaderFormat) -> str:
    """`image`, `video` or `document`: the key part and wire type of a media header."""
    return header_format.value.lower()


def template_slots(
    template: TemplateDef, param_types: Mapping[str, ValueType] | None = None
) -> tuple[Slot, ...]:
    """Every value `template` may take, required ones and optional ones, in request order."""
    types = param_types or {}
    slots: list[Slot] = []
    header = template.header
    if header is not None:
        if header.format is HeaderFormat.TEXT and header.variables:
            slots.append(
                Slot(
                    "header.text",
                    Check.TEXT,
                    max_length=HEADER_TEXT_MAX,
                    help="the header's variable",
                )
            )
        elif header.format in MEDIA_FORMATS:
            kind = media_kind(header.format)
            slots.append(
                Slot(
                    f"header.{kind}.link",
                    Check.URL,
                    max_length=URL_MAX,
                    help=f"https URL of the {kind}",
                )
            )
            slots.append(
                Slot(
                    f"header.{kind}.id",
                    Check.MEDIA_ID,
                    required=False,
                    constant_only=True,
                    help=f"an uploaded {kind}'s media id",
                )
            )
            if header.format is HeaderFormat.DOCUMENT:
                slots.append(
                    Slot(
                        "header.document.filename",
                        Check.FILENAME,
                        required=False,
                        max_length=FILENAME_MAX,
                        help="the document's shown name",
                    )
                )
        elif header.format is HeaderFormat.LOCATION:
            slots += [
                Slot("header.location.latitude", Check.LATITUDE, help="-90..90"),
                Slot("header.location.longitude", Check.LONGITUDE, help="-180..180"),
                Slot("header.location.name", Check.TEXT, required=False, max_length=1000),
                Slot("header.location.address", Check.TEXT, required=False, max_length=1000),
            ]
    if template.body is not None:
        otp_code = template.otp_button is not None
        for position, variable in enumerate(template.body.variables):
            value_type = types.get(variable, ValueType.TEXT)
            key = f"body.{variable}"
            if value_type is ValueType.CURRENCY:
                slots += [
                    Slot(f"{key}.amount", Check.AMOUNT, help="amount, e.g. 12.50"),
                    Slot(f"{key}.code", Check.CURRENCY_CODE, help="ISO 4217 code, e.g. EUR"),
                    Slot(
                        f"{key}.fallback",
                        Check.TEXT,
                        required=False,
                        max_length=BODY_PARAM_MAX,
                        help="shown text (default: amount code)",
                    ),
                ]
            elif otp_code and position == 0:
                slots.append(
                    Slot(
                        key,
                        Check.CODE,
                        max_length=CODE_MAX,
                        help="the one-time password (also sent for the OTP button)",
                    )
                )
            else:
                shown = "date and time text" if value_type is ValueType.DATE_TIME else "text"
                slots.append(Slot(key, Check.TEXT, max_length=BODY_PARAM_MAX, help=shown))
    for button in template.buttons:
        key = f"button.{button.index}"
        if button.type is ButtonType.URL and button.dynamic:
            slots.append(
                Slot(
                    f"{key}.url_suffix",
                    Check.URL_SUFFIX,
                    max_length=URL_MAX,
                    help=f"end of {button.url}",
                )
            )
        elif button.type is ButtonType.QUICK_REPLY:
            slots.append(
                Slot(
                    f"{key}.payload",
                    Check.PAYLOAD,
                    required=False,
                    max_length=1000,
                    help=f"payload of quick reply {button.text!r}",
                )
            )
        elif button.type is ButtonType.COPY_CODE:
            slots.append(
                Slot(f"{key}.coupon_code", Check.CODE, max_length=CODE_MAX, help="the coupon code")
            )
    return tuple(slots)


@dataclass(frozen=True)
class CampaignTemplate:
    """A campaign's template and where each of its values comes from."""

    name: str
    language: str
    source: TemplateSource
    definitions: Mapping[str, TemplateDef]  # by language; the campaign's own among them
    param_types: Mapping[str, ValueType] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)  # slot key -> CSV column
    header_file: HeaderFile | None = None
    waba_id: str = ""
    message_send_ttl_seconds: int | None = None
    product_policy: str | None = None

    @property
    def definition(self) -> TemplateDef:
        """The template in the campaign's language."""
        return self.definitions[self.language]

    @property
    def verified(self) -> bool:
        """Known from the catalogue or a template file (its components are known)."""
        return self.source is not TemplateSource.UNVERIFIED

    @property
    def marketing(self) -> bool:
        """A MARKETING template (it may go through the Marketing Messages API)."""
        return self.definition.category == MARKETING

    def slots(self, language: str | None = None) -> tuple[Slot, ...]:
        """The template's slots in `language` (default: the campaign's)."""
        return template_slots(self.definitions[language or self.language], self.param_types)

    def column(self, key: str) -> str:
        """The CSV column of a slot: its key, unless `--param` named another."""
        return self.columns.get(key, key)

    def per_contact(self, slot: Slot) -> bool:
        """Whether a slot's value comes from each contact's row (not a constant or a file)."""
        if slot.key in self.constants or slot.constant_only:
            return False
        if slot.check is Check.URL and slot.key.startswith("header."):
            kind = slot.key.split(".")[1]
            return self.header_file is None and f"header.{kind}.id" not in self.constants
        return not (slot.key == "header.document.filename" and self.header_file is not None)

    def import_columns(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The CSV columns an import reads: (required in the header, optional)."""
        required: list[str] = []
        optional: list[str] = []
        for language in self.definitions:
            for slot in self.slots(language):
                if not self.per_contact(slot):
                    continue
                column = self.column(slot.key)
                wanted = required if (slot.required and language == self.language) else optional
                if column not in required and column not in optional:
                    wanted.append(column)
        if self.verified and LANGUAGE_COLUMN not in required + optional:
            optional.append(LANGUAGE_COLUMN)
        return tuple(required), tuple(c for c in optional if c not in required)


def bind_template(
    definition: TemplateDef,
    *,
    source: TemplateSource,
    others: Sequence[TemplateDef] = (),
    param_columns: Sequence[str] = (),
    param_types: Mapping[str, str] | None = None,
    sets: Mapping[str, str] | None = None,
    header_file: HeaderFile | None = None,
    waba_id: str = "",
    message_send_ttl_seconds: int | None = None,
    product_policy: str | None = None,
) -> CampaignTemplate:
    """Bind a template to a campaign's columns and constants; TemplateError (one line) when
    they do not fit it. Constants themselves are checked by `template_check.check_constants`."""
    where = f"template {definition.describe()}"
    body_variables = definition.body.variables if definition.body is not None else ()
    types = _param_types(param_types or {}, body_variables, definition, where)
    columns: dict[str, str] = {}
    if param_columns:
        if len(param_columns) != len(body_variables):
            raise TemplateError(
                f"{where}: {len(param_columns)} --param column(s) for "
                f"{len(body_variables)} body variable(s) ({', '.join(body_variables) or 'none'})"
            )
        for variable, column in zip(body_variables, param_columns, strict=True):
            if types.get(variable, ValueType.TEXT) is ValueType.CURRENCY:
                raise TemplateError(f"{where}: --param cannot carry currency variable {variable}")
            columns[f"body.{variable}"] = column
    slots = {slot.key: slot for slot in template_slots(definition, types)}
    constants = dict(sets or {})
    for key in constants:
        if key not in slots:
            known = ", ".join(slots) or "no values at all"
            raise TemplateError(f"{where}: unknown --set key {key!r} (it takes: {known})")
    _check_header_sources(definition, constants, header_file, where)
    if message_send_ttl_seconds is not None:
        low, high = MARKETING_TTL_RANGE_S
        if not low <= message_send_ttl_seconds <= high:
            raise TemplateError(f"message_send_ttl_seconds must be within {low}..{high}")
    if product_policy is not None and product_policy not in PRODUCT_POLICIES:
        raise TemplateError(f"product policy must be one of {', '.join(PRODUCT_POLICIES)}")
    document_header = definition.header is not None and (
        definition.header.format is HeaderFormat.DOCUMENT
    )
    if header_file is not None and document_header:
        constants.setdefault("header.document.filename", header_file.filename)
    definitions = {definition.language: definition}
    for other in others:
        same_header = (other.header.format if other.header else None) == (
            definition.header.format if definition.header else None
        )
        if other.language != definition.language and other.approved and same_header:
            definitions[other.language] = other
    return CampaignTemplate(
        name=definition.name,
        language=definition.language,
        source=source,
        definitions=definitions,
        param_types=types,
        constants=constants,
        columns=columns,
        header_file=header_file,
        waba_id=waba_id,
        message_send_ttl_seconds=message_send_ttl_seconds,
        product_policy=product_policy,
    )


def _param_types(
    raw: Mapping[str, str], variables: Sequence[str], definition: TemplateDef, where: str
) -> dict[str, ValueType]:
    types: dict[str, ValueType] = {}
    for variable, name in raw.items():
        if variable not in variables:
            raise TemplateError(f"{where}: no body variable {variable!r} for --param-type")
        try:
            types[variable] = ValueType(name)
        except ValueError:
            allowed = ", ".join(t.value for t in ValueType)
            raise TemplateError(
                f"--param-type {variable}: {name!r} is not one of {allowed}"
            ) from None
    if (
        definition.otp_button is not None
        and variables
        and types.get(variables[0])
        not in (
            None,
            ValueType.TEXT,
        )
    ):
        raise TemplateError(f"{where}: the one-time password variable must be text")
    return {k: v for k, v in types.items() if v is not ValueType.TEXT}


def _check_header_sources(
    definition: TemplateDef,
    constants: Mapping[str, str],
    header_file: HeaderFile | None,
    where: str,
) -> None:
    header = definition.header
    if header is None or header.format not in MEDIA_FORMATS:
        if header_file is not None:
            raise TemplateError(f"{where}: --header-file given, but it has no media header")
        return
    kind = media_kind(header.format)
    sources = [
        name
        for name, given in (
            ("--header-file", header_file is not None),
            (f"header.{kind}.link", f"header.{kind}.link" in constants),
            (f"header.{kind}.id", f"header.{kind}.id" in constants),
        )
        if given
    ]
    if len(sources) > 1:
        raise TemplateError(f"{where}: the {kind} header has two sources: {' and '.join(sources)}")
    if header_file is not None:
        types, max_size = MEDIA_TYPES[kind]
        if header_file.mime_type not in types:
            raise TemplateError(
                f"{where}: {header_file.filename} is {header_file.mime_type}; a {kind} header"
                f" takes {', '.join(sorted(types))}"
            )
        if header_file.size > max_size:
            raise TemplateError(
                f"{where}: {header_file.filename} is {header_file.size} bytes; a {kind} may be"
                f" at most {max_size}"
            )
        if header_file.size == 0:
            raise TemplateError(f"{where}: {header_file.filename} is empty")
