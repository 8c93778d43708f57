"""Rate cards: the CSV format, calling codes expanded to their regions, and every problem as
one line naming the file and line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.core.ratecard import RateCardError, normal_category, parse_rate_card

HEADER = "country,category,price,currency"


def card(*rows: str) -> list[str]:
    return [HEADER, *rows]


def test_iso_code_calling_code_and_default() -> None:
    parsed = parse_rate_card(
        card(
            "CZ,marketing,0.0600,EUR",
            "+1,marketing,0.0250,EUR",
            "US,marketing,0.0300,EUR",  # the ISO row wins over the calling code's
            "420,utility,0.02,EUR",
            "*,marketing,0.07,EUR",
        ),
        "rates.csv",
    )
    assert parsed.currency == "EUR"
    assert parsed.price("CZ", "marketing") == Decimal("0.0600")
    assert parsed.price("CZ", "utility") == Decimal("0.02")
    assert parsed.price("US", "marketing") == Decimal("0.0300")
    assert parsed.price("CA", "marketing") == Decimal("0.0250")
    assert parsed.price("JM", "marketing") == Decimal("0.0250")
    assert parsed.price("FR", "marketing") == Decimal("0.07")
    assert parsed.price("FR", "utility") is None
    assert parsed.price(None, "marketing") == Decimal("0.07")


def test_header_in_any_order_comments_blank_lines_and_extra_columns() -> None:
    parsed = parse_rate_card(
        [
            "# EXAMPLE ONLY",
            "",
            "Currency,Price,Note,Country,Category",
            "eur,0.05,example,gb,MARKETING",
        ],
        "r.csv",
    )
    assert parsed.price("GB", "marketing") == Decimal("0.05")


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([], "r.csv:1: empty"),
        (["country,price,currency"], "r.csv:1: the header lacks category"),
        ([HEADER], "r.csv:1: no rates"),
        (card("CZ,marketing,abc,EUR"), "r.csv:2: price 'abc' is not a number"),
        (card("CZ,marketing,-1,EUR"), "r.csv:2: price '-1' must be a number from 0"),
        (card("CZ,marketing,NaN,EUR"), "r.csv:2: price 'NaN' must be a number"),
        (card("CZ,marketing,0.1,EUR", "DE,marketing,0.1,USD"), "r.csv:3: currency USD differs"),
        (card("CZ,marketing,0.1,euro"), "r.csv:2: currency 'EURO' is not an ISO 4217"),
        (card("CZ,promo,0.1,EUR"), "r.csv:2: category 'promo' is not one of"),
        (card("XX,marketing,0.1,EUR"), "r.csv:2: country 'XX' is not an ISO 3166"),
        (card("Czechia,marketing,0.1,EUR"), "r.csv:2: country 'Czechia' must be"),
        (card("999,marketing,0.1,EUR"), "r.csv:2: '999' is no country's calling code"),
        (card("CZ,marketing,0.1,EUR", "cz,marketing,0.2,EUR"), "r.csv:3: cz marketing is priced"),
        (card("CZ,marketing"), "r.csv:2: 2 cells, the header has 4 columns"),
        (["# c", HEADER, "", "CZ,marketing,0.1,EUR", "DE,x,1,EUR"], "r.csv:5: category 'x'"),
    ],
)
def test_problems_are_one_line_with_file_and_line(lines: list[str], fragment: str) -> None:
    with pytest.raises(RateCardError) as caught:
        parse_rate_card(lines, "r.csv")
    message = str(caught.value)
    assert fragment in message, message
    assert "\n" not in message


def test_categories_as_templates_and_statuses_spell_them() -> None:
    assert normal_category("MARKETING") == "marketing"
    assert normal_category("authentication_international") == "authentication_international"
    assert normal_category("") == "marketing"
    assert normal_category("referral_conversion", "utility") == "utility"
