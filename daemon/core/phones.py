"""Normalise a phone number as written in an import file to the API's form: country code and
digits, no "+" (what Meta calls a wa_id).

Called once per imported row, so it uses str.translate and str methods, no regex. It checks
the shape only; whether a number exists is known only by sending to it (Meta has no lookup).
"""

from __future__ import annotations

from typing import Final

# E.164 caps a number at 15 digits, country code included. The shortest numbers in use are
# 7 digits: Niue (+683) mobiles have 4 national digits, 3 + 4 = 7 (libphonenumber metadata).
# Rejecting a real number would be worse than letting a short wrong one fail at the API.
MIN_DIGITS: Final = 7
MAX_DIGITS: Final = 15

# Formatting people and spreadsheets put in numbers: spaces (also no-break and thin ones),
# dashes, dots, slashes, parentheses.
_FORMATTING: Final = str.maketrans(
    dict.fromkeys(" \t\u00a0\u2009\u202f-\u2010\u2011\u2013./()", None)
)


class InvalidPhone(ValueError):
    """`reason` is a stable slug stored as the contact's invalid_reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_phone(raw: str) -> str:
    """The digits with country code: "+33 (0)6 12-34-56-78" and "0033612345678" -> "33612345678".

    Reasons: empty_phone (nothing but formatting), invalid_characters (letters, a "+" inside
    the number...), invalid_number (no country code: a national number starting with 0, or a
    spreadsheet float like "33612345678.0"), invalid_length (outside 7-15 digits).
    """
    text = raw.strip()
    if text.startswith("+"):
        text = text[1:]
    if text.endswith(".0"):
        raise InvalidPhone("invalid_number")
    if "(0)" in text:  # "+44 (0)20 ...": the national trunk prefix, not dialled from abroad
        text = text.replace("(0)", "", 1)
    digits = text.translate(_FORMATTING)
    if not digits:
        raise InvalidPhone("empty_phone")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidPhone("invalid_characters")
    if digits.startswith("00"):  # the international call prefix used in most of the world
        digits = digits[2:]
    if digits.startswith("0"):  # country codes never start with 0
        raise InvalidPhone("invalid_number")
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise InvalidPhone("invalid_length")
    return digits
