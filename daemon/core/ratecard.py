"""Rate cards: what one delivered template message costs, by recipient country and pricing
category, as the operator copies it from Meta's current card (`campaign estimate`,
`campaign create|update --rate-card`).

A rate card is a CSV file with the header columns `country,category,price,currency` (any order,
any case; other columns ignored). `country` is an ISO 3166 alpha-2 code (`CZ`), a calling code
(`420`, `+1`: every region of that code; an ISO row of one of them wins), or `*` for every
country the card does not name. `category` is one of CATEGORIES, `price` a decimal number
(`0.0592`), `currency` an ISO 4217 code, the same on every row. Empty lines and lines starting
with `#` are skipped. Any other problem is one RateCardError line naming the file and line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

import phonenumbers

CATEGORIES: Final = (
    "marketing",
    "utility",
    "authentication",
    "authentication_international",
    "service",
)
"""The pricing categories a rate may be given for (Meta's pricing.category values)."""
COLUMNS: Final = ("country", "category", "price", "currency")
ANY_COUNTRY: Final = "*"
_ISO: Final = re.compile(r"[A-Z]{2}")
_CALLING: Final = re.compile(r"\+?([1-9][0-9]{0,2})")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_MAX_PRICE: Final = Decimal("1000000")


class RateCardError(ValueError):
    """A rate card that cannot be used: `file:line: what is wrong`."""


@dataclass(frozen=True)
class Rate:
    """One price as loaded: the region it applies to, its category and the file's line."""

    region: str
    category: str
    price: Decimal
    line: int


@dataclass(frozen=True)
class RateCard:
    """Prices by (region, category); region ANY_COUNTRY for countries the card does not name."""

    currency: str
    rates: Mapping[tuple[str, str], Rate]
    origin: str = "<rate card>"

    def price(self, region: str | None, category: str) -> Decimal | None:
        """The price of one message to `region` in `category` (None: the card has none)."""
        for key in ((region or "?", category), (ANY_COUNTRY, category)):
            rate = self.rates.get(key)
            if rate is not None:
                return rate.price
        return None


def normal_category(category: str | None, fallback: str = "marketing") -> str:
    """A template's or a status's category as the card spells it (MARKETING -> marketing);
    an unknown or empty one is `fallback`."""
    text = (category or "").strip().lower()
    return text if text in CATEGORIES else fallback


def parse_rate_card(lines: Iterable[str], origin: str) -> RateCard:
    """The rate card of a CSV file's lines (RateCardError: `origin:line: problem`)."""
    numbered = ((n, line) for n, line in enumerate(lines, start=1))
    kept = ((n, line) for n, line in numbered if line.strip() and not line.lstrip().startswith("#"))
    header: dict[str, int] | None = None
    currency: str | None = None
    iso: dict[tuple[str, str], Rate] = {}
    by_code: dict[tuple[str, str], Rate] = {}
    for n, line in kept:
        try:
            cells = next(csv.reader([line]))
        except csv.Error as exc:
            raise RateCardError(f"{origin}:{n}: not CSV: {exc}") from None
        if header is None:
            header = _header(cells, origin, n)
            continue
        if len(cells) <= max(header.values()):
            raise RateCardError(
                f"{origin}:{n}: {len(cells)} cells, the header has {len(header)} columns"
            )
        country, category, price_text, row_currency = (cells[header[c]].strip() for c in COLUMNS)
        row_currency = row_currency.upper()
        if not _CURRENCY.fullmatch(row_currency):
            raise RateCardError(
                f"{origin}:{n}: currency {row_currency!r} is not an ISO 4217 code (e.g. EUR)"
            )
        if currency is None:
            currency = row_currency
        elif row_currency != currency:
            raise RateCardError(
                f"{origin}:{n}: currency {row_currency} differs from {currency} of the rows"
                " above: one card, one currency"
            )
        cat = category.lower()
        if cat not in CATEGORIES:
            raise RateCardError(
                f"{origin}:{n}: category {category!r} is not one of {', '.join(CATEGORIES)}"
            )
        price = _price(price_text, origin, n)
        for region, table in _regions(country, origin, n, iso, by_code):
            key = (region, cat)
            if key in table:
                raise RateCardError(
                    f"{origin}:{n}: {country} {cat} is priced twice (line {table[key].line})"
                )
            table[key] = Rate(region, cat, price, n)
    if header is None:
        raise RateCardError(f"{origin}:1: empty: expected the header {','.join(COLUMNS)}")
    if currency is None:
        raise RateCardError(f"{origin}:1: no rates below the header")
    return RateCard(currency, {**by_code, **iso}, origin)


def _header(cells: list[str], origin: str, n: int) -> dict[str, int]:
    names = [c.strip().lower() for c in cells]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise RateCardError(
            f"{origin}:{n}: the header lacks {', '.join(missing)} (expected columns"
            f" {','.join(COLUMNS)})"
        )
    return {c: names.index(c) for c in COLUMNS}


def _price(text: str, origin: str, n: int) -> Decimal:
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise RateCardError(f"{origin}:{n}: price {text!r} is not a number") from None
    if not price.is_finite() or price < 0 or price > _MAX_PRICE:
        raise RateCardError(f"{origin}:{n}: price {text!r} must be a number from 0 to 1000000")
    return price


def _regions(
    country: str,
    origin: str,
    n: int,
    iso: dict[tuple[str, str], Rate],
    by_code: dict[tuple[str, str], Rate],
) -> list[tuple[str, dict[tuple[str, str], Rate]]]:
    """The regions a row's country cell names, each with the table it goes in."""
    upper = country.upper()
    if upper == ANY_COUNTRY:
        return [(ANY_COUNTRY, iso)]
    if _ISO.fullmatch(upper):
        if upper not in phonenumbers.SUPPORTED_REGIONS:
            raise RateCardError(f"{origin}:{n}: country {country!r} is not an ISO 3166 code")
        return [(upper, iso)]
    match = _CALLING.fullmatch(country)
    if match is not None:
        regions = phonenumbers.region_codes_for_country_code(int(match.group(1)))
        if regions and regions != ("001",):
            return [(r, by_code) for r in regions]
        raise RateCardError(f"{origin}:{n}: {country!r} is no country's calling code")
    raise RateCardError(
        f"{origin}:{n}: country {country!r} must be an ISO 3166 alpha-2 code (CZ), a calling"
        " code (420) or *"
    )
