from __future__ import annotations

import pytest

from daemon.core.phones import InvalidPhone, normalize_phone


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("16505551234", "16505551234"),
        ("+16505551234", "16505551234"),
        ("+1-631-555-5555", "16315555555"),
        ("+1 (650) 555-1234", "16505551234"),
        ("+33 6 12 34 56 78", "33612345678"),
        ("+33 (0)6 12 34 56 78", "33612345678"),
        ("+44 (0) 20 7946 0958", "442079460958"),
        ("0033612345678", "33612345678"),
        ("00 49 171 1234567", "491711234567"),
        ("+49 171/1234567", "491711234567"),
        ("33.6.12.34.56.78", "33612345678"),
        ("  +33612345678\t", "33612345678"),
        ("+33\u00a06\u202f12\u200934\u201156\u201078", "33612345678"),
        ("+683 5123", "6835123"),  # Niue: the shortest numbers in use, 7 digits
        ("+123456789012345", "123456789012345"),  # E.164's 15-digit maximum
    ],
)
def test_accepted_formats_normalize_to_country_code_and_digits(raw: str, normalized: str) -> None:
    assert normalize_phone(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty_phone"),
        ("   ", "empty_phone"),
        ("+", "empty_phone"),
        ("( ) - .", "empty_phone"),
        ("+33 6 12 34 56 7a", "invalid_characters"),
        ("phone: 33612345678", "invalid_characters"),
        ("33612345678 ext 12", "invalid_characters"),
        ("++33612345678", "invalid_characters"),
        ("+33+612345678", "invalid_characters"),
        ("33612345678,", "invalid_characters"),
        ("3.3612345678E+10", "invalid_characters"),
        ("+٣٣٦١٢٣٤٥٦٧٨", "invalid_characters"),  # Arabic-Indic digits
        ("０３３６１２３４５６７８", "invalid_characters"),  # full-width digits
        ("33612345678.0", "invalid_number"),  # a spreadsheet float
        ("0612345678", "invalid_number"),  # national format: no country code
        ("+0612345678", "invalid_number"),
        ("000612345678", "invalid_number"),
        ("123456", "invalid_length"),
        ("+1234567890123456", "invalid_length"),
        ("00", "invalid_length"),
        ("00 1234", "invalid_length"),
    ],
)
def test_invalid_phones_are_refused_with_a_stable_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone) as refused:
        normalize_phone(raw)
    assert refused.value.reason == reason
    assert str(refused.value) == reason


def test_invalid_phone_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        normalize_phone("nope")
