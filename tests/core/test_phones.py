"""Phone numbers through phonenumbers: national, trunk-zero, international and messy forms of
numbers from CZ, SK, GB, US, DE, IN and BR, with and without a default country."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from daemon.core.phone_fast import fast_parse
from daemon.core.phones import InvalidPhone, Phone, clean_digits, parse_phone, slow_parse

CZ_ZONE, GB_ZONE = "Europe/Prague", "Europe/London"

VALID = [
    # (as written, default country, E.164 digits, region, single time zone or None)
    ("602 123 456", "CZ", "420602123456", "CZ", CZ_ZONE),
    ("602123456", "CZ", "420602123456", "CZ", CZ_ZONE),
    ("602.123.456", "CZ", "420602123456", "CZ", CZ_ZONE),
    ("222 123 456", "CZ", "420222123456", "CZ", CZ_ZONE),
    ("+420 602 123 456", None, "420602123456", "CZ", CZ_ZONE),
    ("(+420) 602-123-456", None, "420602123456", "CZ", CZ_ZONE),
    ("00420602123456", None, "420602123456", "CZ", CZ_ZONE),
    ("420602123456", "CZ", "420602123456", "CZ", CZ_ZONE),  # country code without "+"
    ("0912 345 678", "SK", "421912345678", "SK", "Europe/Bratislava"),
    ("912345678", "SK", "421912345678", "SK", "Europe/Bratislava"),
    ("+421 912 345 678", None, "421912345678", "SK", "Europe/Bratislava"),
    ("00421912345678", "CZ", "421912345678", "SK", "Europe/Bratislava"),
    ("07561 973069", "GB", "447561973069", "GB", None),  # mobiles: GB, Jersey, Guernsey, Man
    ("+44 7561 973069", None, "447561973069", "GB", None),
    ("+44 (0)7561 973069", None, "447561973069", "GB", None),
    ("0044 7561 973069", None, "447561973069", "GB", None),
    ("020 7946 0958", "GB", "442079460958", "GB", GB_ZONE),
    ("+44 20 7946 0958", None, "442079460958", "GB", GB_ZONE),
    ("(650) 555-1234", "US", "16505551234", "US", "America/Los_Angeles"),
    ("650.555.1234", "US", "16505551234", "US", "America/Los_Angeles"),
    ("1-650-555-1234", "US", "16505551234", "US", "America/Los_Angeles"),
    ("+1 650 555 1234", None, "16505551234", "US", "America/Los_Angeles"),
    ("+1 (212) 555-0123", None, "12125550123", "US", "America/New_York"),
    ("011 44 7561 973069", "US", "447561973069", "GB", None),  # the US's own exit code
    ("0171 1234567", "DE", "491711234567", "DE", "Europe/Berlin"),
    ("030 123456", "DE", "4930123456", "DE", "Europe/Berlin"),
    ("+49 171 1234567", None, "491711234567", "DE", "Europe/Berlin"),
    ("+49 (0)30 1234567", None, "49301234567", "DE", "Europe/Berlin"),
    ("0049 171/1234567", None, "491711234567", "DE", "Europe/Berlin"),
    ("98765 43210", "IN", "919876543210", "IN", "Asia/Calcutta"),
    ("098765 43210", "IN", "919876543210", "IN", "Asia/Calcutta"),
    ("+91 98765 43210", None, "919876543210", "IN", "Asia/Calcutta"),
    ("(11) 91234-5678", "BR", "5511912345678", "BR", "America/Sao_Paulo"),
    ("011 91234 5678", "BR", "5511912345678", "BR", "America/Sao_Paulo"),
    ("+55 11 91234 5678", None, "5511912345678", "BR", "America/Sao_Paulo"),
    ("  +420\u00a0602\u202f123\u2009456\t", None, "420602123456", "CZ", CZ_ZONE),
    ("+683 5123", None, "6835123", "NU", "Pacific/Niue"),  # Niue: 7 digits in all
]

INVALID = [
    # (as written, default country, reason)
    ("602 123 456", None, "missing_country_code"),  # was read as +60, Malaysia
    ("0912 345 678", None, "missing_country_code"),
    ("07561 973069", None, "missing_country_code"),
    ("(555) 010-0199", None, "missing_country_code"),  # was read as +55, Brazil
    ("(555) 010-0199", "US", "invalid_number"),  # 555 is no US area code
    ("+420 602 12 345", None, "invalid_number"),  # a digit short
    ("07561 97306", "GB", "invalid_number"),
    ("+44 7700 900000", None, "invalid_number"),  # Ofcom's drama range: never assigned
    ("+1 650 555 123", None, "invalid_number"),
    ("+55 11 1234 567", None, "invalid_number"),
    ("+91 98765 4321", None, "invalid_number"),
    ("4.20602E+11", "CZ", "invalid_characters"),  # Excel's scientific notation: digits lost
    ("33612345678.0", None, "invalid_number"),  # a spreadsheet float
    ("602 ABC 456", "CZ", "invalid_characters"),
    ("1-800-FLOWERS", "US", "invalid_characters"),  # no keypad letters
    ("+420 602 123 456 ext 12", None, "invalid_characters"),
    ("++420602123456", None, "invalid_characters"),
    ("+420+602123456", None, "invalid_characters"),
    ("+٤٢٠٦٠٢١٢٣٤٥٦", None, "invalid_characters"),  # Arabic-Indic digits
    ("０６０２１２３４５６", "CZ", "invalid_characters"),  # full-width digits
    ("", None, "empty_phone"),
    ("  ", "CZ", "empty_phone"),
    ("( ) - .", "CZ", "empty_phone"),
    ("+0612345678", None, "invalid_number"),  # country codes never start with 0
    ("+1234567890123456", None, "invalid_length"),  # over E.164's 15 digits
    ("00 1234", None, "invalid_length"),
]


@pytest.mark.parametrize(("raw", "country", "digits", "region", "zone"), VALID)
def test_numbers_become_e164_with_region_and_zone(
    raw: str, country: str | None, digits: str, region: str, zone: str | None
) -> None:
    assert parse_phone(raw, country) == Phone(digits, region, zone)


@pytest.mark.parametrize(("raw", "country", "reason"), INVALID)
def test_numbers_refused_with_a_stable_reason(raw: str, country: str | None, reason: str) -> None:
    with pytest.raises(InvalidPhone) as refused:
        parse_phone(raw, country)
    assert refused.value.reason == reason


def test_the_table_covers_forty_numbers_of_seven_countries() -> None:
    assert len(VALID) + len(INVALID) >= 40
    regions = {r for _, _, _, r, _ in VALID}
    assert {"CZ", "SK", "GB", "US", "DE", "IN", "BR"} <= regions


REGIONS = ["CZ", "SK", "GB", "US", "DE", "IN", "BR", "FR", "IT", "RU", "AR", "MX", "AU", "JP"]


def _slow_or_reason(digits: str, international: bool, region: str | None) -> Phone | str:
    try:
        return slow_parse(digits, international, region)
    except InvalidPhone as exc:
        return exc.reason


def test_the_fast_path_answers_as_phonenumbers_does() -> None:
    """On numbers near each country's examples (valid, off by some digits, with and without
    trunk prefix and country code), the fast path gives phonenumbers' own answer or defers."""
    rng = random.Random(18)
    compared = 0
    for region in REGIONS:
        code = phonenumbers.country_code_for_region(region)
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            assert example is not None
            base = str(example.national_number)
            for _ in range(150):
                k = rng.randint(0, min(5, len(base)))
                national = base[: len(base) - k] + "".join(
                    rng.choice("0123456789") for _ in range(k)
                )
                national = national[: rng.randint(len(national) - 1, len(national))] or "1"
                for raw, default in (
                    (f"+{code}{national}", None),
                    (national, region),
                    ("0" + national, region),
                    (f"{code}{national}", region),
                ):
                    digits, international = clean_digits(raw)
                    fast = fast_parse(digits, international, default)
                    if fast is None:
                        continue
                    slow = _slow_or_reason(digits, international, default)
                    expected = (
                        slow
                        if isinstance(slow, str)
                        else (slow.digits, slow.region, slow.time_zone)
                    )
                    assert fast == expected, (raw, default)
                    compared += 1
    assert compared > 3000


def test_invalid_phone_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_phone("nope")
