"""Phone numbers as written in an import file or on the command line, to the API's form: the
E.164 digits without "+" (what Meta calls a wa_id), with the number's region and time zone.

The rules are Google's libphonenumber (its Python port `phonenumbers`): a national number needs
a default country (`602 123 456` with CZ is +420 602 123 456; without one it is
`missing_country_code`, never guessed), trunk zeros are dropped the country's way
(`0912 345 678` SK, `07561 973069` GB), and a number must be *valid* for its country, not merely
of a possible length (`invalid_number`). An import parses a million of these, and
`phonenumbers.parse` costs ~25 us a number; `core.phone_fast` gives the same answer for the
plain cases in ~3 us and everything else goes through the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException
from phonenumbers.timezone import time_zones_for_number

from daemon.core.phone_fast import INVALID, fast_parse, single_zone

# Formatting people and spreadsheets put in numbers: spaces (also no-break and thin ones),
# dashes, dots, slashes, parentheses. Anything else but ASCII digits is refused: phonenumbers
# would read letters as a keypad ("1-800-FLOWERS") and other scripts' digits as digits.
_FORMATTING: Final = str.maketrans(
    dict.fromkeys(" \t\u00a0\u2009\u202f-\u2010\u2011\u2013./()", None)
)
REASONS: Final = (
    "empty_phone",
    "invalid_characters",
    "missing_country_code",
    "invalid_length",
    "invalid_number",
)
"""Every reason a phone is refused for, as stored in contacts.invalid_reason."""


class InvalidPhone(ValueError):
    """`reason` is a stable slug stored as the contact's invalid_reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Phone:
    """A valid number: E.164 digits without "+", its ISO 3166 region ("CZ"; None for
    non-geographic numbers such as +800), and its IANA time zone when phonenumbers gives
    exactly one for it (None when the number's area spans several, e.g. most of +44)."""

    digits: str
    region: str | None
    time_zone: str | None


def known_region(code: str) -> str:
    """The region code upper-cased when phonenumbers knows it ("cz" -> "CZ"); ValueError else."""
    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown country code {code!r} (ISO 3166 alpha-2, e.g. CZ, GB, US)")
    return region


def clean_digits(raw: str) -> tuple[str, bool]:
    """The number's digits and whether they carry an international prefix ("+" or "00");
    InvalidPhone for what cannot be a number at all."""
    text = raw.strip()
    if text.startswith("(+") and ")" in text:  # "(+420) 602 123 456"
        text = "+" + text[2:].replace(")", " ", 1)
    international = text.startswith("+")
    if international:
        text = text[1:]
        if "(0)" in text:  # "+44 (0)20 ...": the trunk prefix, not dialled from abroad
            text = text.replace("(0)", "", 1)
    if text.endswith(".0"):  # a spreadsheet float: digits may already be lost
        raise InvalidPhone("invalid_number")
    digits = text.translate(_FORMATTING)
    if not digits:
        raise InvalidPhone("empty_phone")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidPhone("invalid_characters")  # letters, a second "+", 4.2E+11, ...
    if not international and digits.startswith("00"):
        # The international call prefix of most of the world, whatever the default country
        # dials abroad with (the US's 011 is read by phonenumbers itself).
        international, digits = True, digits[2:]
    return digits, international


def parse_phone(raw: str, default_region: str | None = None) -> Phone:
    """The number written `raw`, read in `default_region` when it has no international prefix
    (None: such numbers are `missing_country_code`). InvalidPhone with one of `REASONS`."""
    digits, international = clean_digits(raw)
    if international:
        if digits.startswith("0"):  # country codes never start with 0
            raise InvalidPhone("invalid_number")
        if not 7 <= len(digits) <= 15:  # E.164: 15 digits at most; Niue's are 7
            raise InvalidPhone("invalid_length")
    elif default_region is None:
        raise InvalidPhone("missing_country_code")
    elif len(digits) > 17:  # libphonenumber's longest national number
        raise InvalidPhone("invalid_length")
    found = fast_parse(digits, international, default_region)
    if found is INVALID:
        raise InvalidPhone("invalid_number")
    if found is not None:
        return Phone(*found)
    return slow_parse(digits, international, default_region)


def slow_parse(digits: str, international: bool, default_region: str | None) -> Phone:
    """`parse_phone` through phonenumbers only (the fast path's reference, and its fallback)."""
    try:
        number = phonenumbers.parse(
            "+" + digits if international else digits, None if international else default_region
        )
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidPhone("invalid_number") from None
        if exc.error_type == NumberParseException.NOT_A_NUMBER:
            raise InvalidPhone("invalid_characters") from None
        raise InvalidPhone("invalid_length") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("invalid_number")
    region = phonenumbers.region_code_for_number(number)
    return Phone(
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:],
        None if region in (None, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY) else region,
        single_zone(time_zones_for_number(number)),
    )


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """The E.164 digits without "+": "+420 602 123 456" and ("602 123 456", "CZ") ->
    "420602123456". InvalidPhone with one of `REASONS`."""
    return parse_phone(raw, default_region).digits
