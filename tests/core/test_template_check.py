"""The per-row template check of an import: each row's values stored, or the reason it is an
invalid record; a contact's language, or the campaign's when the template lacks it."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.core.model import legacy_spec
from daemon.core.payload import Template
from daemon.core.template_check import amount_1000, check_row
from daemon.core.template_spec import CampaignTemplate, TemplateSource, bind_template
from daemon.core.templates import parse_template
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES


def spec(name: str, *, others: tuple[str, ...] = (), **kwargs: Any) -> CampaignTemplate:
    documents = [d for d in SAMPLE_TEMPLATES if d["name"] == name]
    primary = next(parse_template(d) for d in documents if d["language"] == "en_US")
    rest = [parse_template(d) for d in documents if d["language"] in others]
    return bind_template(primary, others=rest, source=TemplateSource.CATALOGUE, **kwargs)


RICH = {"param_types": {"worth": "currency", "expiry": "date_time"}}
GOOD_RICH = {
    "header.image.link": "https://cdn.example.com/a.jpg",
    "body.first_name": "Anna",
    "body.points": "120",
    "body.worth.amount": "12.5",
    "body.worth.code": "EUR",
    "body.expiry": "31 May",
    "button.0.url_suffix": "o/17",
    "button.1.payload": "",
    "button.2.coupon_code": "SPRING20",
}

# One row per reason: the campaign, the row's values, the reason.
REASONS = [
    ("missing_parameter", "sample_rich_named", {"body.first_name": ""}),
    ("missing_parameter", "sample_rich_named", {"button.2.coupon_code": ""}),
    ("invalid_parameter_text", "sample_rich_named", {"body.first_name": "two\nlines"}),
    ("invalid_parameter_text", "sample_rich_named", {"body.points": "tab\there"}),
    ("invalid_parameter_text", "sample_rich_named", {"body.expiry": "31     May"}),
    ("invalid_parameter_text", "sample_rich_named", {"button.2.coupon_code": "SPR 20"}),
    ("parameter_too_long", "sample_rich_named", {"body.first_name": "x" * 32769}),
    ("parameter_too_long", "sample_rich_named", {"button.2.coupon_code": "C" * 16}),
    ("invalid_currency_amount", "sample_rich_named", {"body.worth.amount": "twelve"}),
    ("invalid_currency_amount", "sample_rich_named", {"body.worth.amount": "12.3456"}),
    ("invalid_currency_code", "sample_rich_named", {"body.worth.code": "euro"}),
    ("invalid_url", "sample_rich_named", {"header.image.link": "http://cdn.example.com/a.jpg"}),
    ("invalid_url", "sample_rich_named", {"header.image.link": "not a url"}),
    ("invalid_url", "sample_rich_named", {"button.0.url_suffix": "o/1 7"}),
]


@pytest.mark.parametrize(("reason", "name", "change"), REASONS)
def test_each_bad_value_makes_the_row_invalid_with_its_reason(
    reason: str, name: str, change: dict[str, str]
) -> None:
    row = {**GOOD_RICH, **change}
    result = check_row(spec(name, **RICH), dict(row))
    assert result.reason == reason
    assert result.params == {k: v for k, v in row.items()}  # an invalid record keeps its row


def test_header_text_is_limited_to_60_and_otp_codes_to_15() -> None:
    header = spec("sample_header_text")
    assert check_row(header, {"header.text": "x" * 60, "body.1": "A"}).reason is None
    assert check_row(header, {"header.text": "x" * 61, "body.1": "A"}).reason == (
        "parameter_too_long"
    )
    otp = spec("sample_otp_zero_tap")
    assert check_row(otp, {"body.1": "123456"}).reason is None
    assert check_row(otp, {"body.1": "1" * 16}).reason == "parameter_too_long"


def test_location_must_be_numbers_in_range() -> None:
    location = spec("sample_location")
    good = {
        "header.location.latitude": "50.08",
        "header.location.longitude": "14.42",
        "body.1": "Anna",
    }
    assert check_row(location, dict(good)).reason is None
    for bad in ("north", "91", "-90.5"):
        row = {**good, "header.location.latitude": bad}
        assert check_row(location, row).reason == "invalid_location"


def test_a_valid_row_stores_its_values_and_the_currency_worked_out() -> None:
    result = check_row(spec("sample_rich_named", **RICH), dict(GOOD_RICH))
    assert result.reason is None and result.note is None
    assert result.params["body.worth.amount_1000"] == "12500"
    assert result.params["body.worth.fallback"] == "12.5 EUR"
    assert "button.1.payload" not in result.params  # optional and empty: no quick reply


def test_constants_are_not_read_from_rows() -> None:
    constant = spec("sample_rich_named", sets={"body.worth.code": "CZK"}, **RICH)
    row = {k: v for k, v in GOOD_RICH.items() if k != "body.worth.code"}
    result = check_row(constant, row)
    assert result.reason is None
    assert result.params["body.worth.fallback"] == "12.5 CZK"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.5", 12500),
        ("0", 0),
        ("-3.25", -3250),
        ("100.999", 100999),
        ("1e3", None),
        ("12,50", None),
        ("2147483.647", 2147483647),
        ("2147483.648", None),
        ("", None),
    ],
)
def test_amounts_become_amount_1000(value: str, expected: int | None) -> None:
    assert amount_1000(value) == expected


def test_a_contact_language_of_the_template_is_kept_and_another_falls_back() -> None:
    bilingual = spec("sample_header_text", others=("de_DE",))
    row = {"header.text": "Sommer", "body.1": "Anna"}
    german = check_row(bilingual, {**row, "language": "de_DE"})
    assert (german.reason, german.note, german.params["language"]) == (None, None, "de_DE")
    french = check_row(bilingual, {**row, "language": "fr_FR"})
    assert (french.reason, french.note) == (None, "language_fallback")
    assert "language" not in french.params
    own = check_row(bilingual, {**row, "language": "en_US"})
    assert (own.note, "language" in own.params) == (None, False)


def test_one_language_campaigns_count_fallbacks_too() -> None:
    single = spec("sample_body_types")
    result = check_row(single, {"body.1": "a", "body.2": "b", "body.3": "c", "language": "xx"})
    assert (result.reason, result.note) == (None, "language_fallback")
    assert "language" not in result.params


def test_legacy_param_campaigns_get_meta_s_text_rules_too() -> None:
    legacy = legacy_spec(Template("spring_sale", "en_US", ("first_name", "code")))
    assert check_row(legacy, {"first_name": "Anna", "code": "A1"}).reason is None
    assert check_row(legacy, {"first_name": "", "code": "A1"}).reason == "missing_parameter"
    assert check_row(legacy, {"first_name": "A\tB", "code": "A1"}).reason == (
        "invalid_parameter_text"
    )
    assert check_row(legacy, {"first_name": "A" * 32769, "code": "1"}).reason == (
        "parameter_too_long"
    )
    # Unverified: a language column is a parameter like any other, never a language.
    assert check_row(legacy, {"first_name": "A", "code": "1", "language": "de"}).note is None
