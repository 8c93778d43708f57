"""Checking one contact's values against its campaign's template, at import.

`check_row(spec, values)` is the one per-row check of a contacts import: the row's values
(by column) in, the values to store for the contact (what the body builder reads) or the
reason the row is an invalid record out. Reasons (`contacts.invalid_reason`):

    missing_parameter        a required value is empty
    invalid_parameter_text   a newline, a tab or more than 4 spaces in a row (Meta: 132018)
    parameter_too_long       over the component's limit (body 32,768; header text 60;
                             coupon and one-time password 15)
    invalid_currency_amount  not a number with at most 3 decimals
    invalid_currency_code    not a three-letter ISO 4217 code
    invalid_url              not an https URL (media), or a URL suffix with spaces
    invalid_location         latitude or longitude not a number in range

A `language` column picks the contact's template language; one the template lacks falls back
to the campaign's and is counted (note `language_fallback`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from daemon.core.template_spec import (
    BODY_PARAM_MAX,
    LANGUAGE_COLUMN,
    CampaignTemplate,
    Check,
    Slot,
    ValueType,
)
from daemon.core.templates import TemplateError

MISSING = "missing_parameter"
BAD_TEXT = "invalid_parameter_text"
TOO_LONG = "parameter_too_long"
BAD_AMOUNT = "invalid_currency_amount"
BAD_CURRENCY = "invalid_currency_code"
BAD_URL = "invalid_url"
BAD_LOCATION = "invalid_location"
LANGUAGE_FALLBACK = "language_fallback"
INT32_MAX: Final = 2**31 - 1

# What Meta refuses in a rendered parameter (132018): a newline, a tab, 5+ spaces in a row.
_BAD_TEXT = re.compile(r"[\n\r\t]| {5}")
_AMOUNT = re.compile(r"-?[0-9]+(?:\.[0-9]{1,3})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_WHITESPACE = re.compile(r"\s")


class RowCheck(NamedTuple):
    """One row's verdict: the values to store, or why it is invalid; and a note to count."""

    params: dict[str, str]
    reason: str | None = None
    note: str | None = None


RowChecker = Callable[[dict[str, str]], RowCheck]


def value_problem(slot: Slot, value: str) -> str | None:
    """Why one non-empty value does not fit its slot (a reason), or None."""
    check = slot.check
    if slot.max_length is not None and len(value) > slot.max_length:
        return TOO_LONG
    if check is Check.TEXT:
        return BAD_TEXT if _BAD_TEXT.search(value) else None
    if check is Check.URL:
        return None if _https_url(value) else BAD_URL
    if check is Check.URL_SUFFIX:
        return BAD_URL if _WHITESPACE.search(value) else None
    if check is Check.CODE:
        return BAD_TEXT if _WHITESPACE.search(value) else None
    if check is Check.AMOUNT:
        return None if amount_1000(value) is not None else BAD_AMOUNT
    if check is Check.CURRENCY_CODE:
        return None if _CURRENCY.fullmatch(value) else BAD_CURRENCY
    if check in (Check.LATITUDE, Check.LONGITUDE):
        bound = 90 if check is Check.LATITUDE else 180
        try:
            number = float(value)
        except ValueError:
            return BAD_LOCATION
        return None if -bound <= number <= bound else BAD_LOCATION
    if check in (Check.FILENAME, Check.PAYLOAD):
        return BAD_TEXT if _BAD_TEXT.search(value) else None
    return None  # MEDIA_ID: Meta's to judge


def amount_1000(value: str) -> int | None:
    """`12.50` -> 12500 (Meta's amount_1000); None when not a number within int32."""
    text = value.strip()
    if not _AMOUNT.fullmatch(text):
        return None
    try:
        scaled = int(Decimal(text) * 1000)
    except InvalidOperation:
        return None
    return scaled if abs(scaled) <= INT32_MAX else None


def _https_url(value: str) -> bool:
    if _WHITESPACE.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)


def check_constants(spec: CampaignTemplate) -> None:
    """The campaign's `--set` values fit their slots; TemplateError naming the first that
    does not."""
    slots = {slot.key: slot for slot in spec.slots()}
    for key, value in spec.constants.items():
        slot = slots.get(key)
        if slot is None:
            continue
        if not value:
            raise TemplateError(f"--set {key}: empty value")
        problem = value_problem(slot, value)
        if problem is not None:
            raise TemplateError(f"--set {key}={value!r}: {problem.replace('_', ' ')}")


def check_row(spec: CampaignTemplate, values: dict[str, str]) -> RowCheck:
    """One row against the campaign's template (see the module docstring)."""
    return row_checker(spec)(values)


def row_checker(spec: CampaignTemplate) -> RowChecker:
    """`check_row` for one campaign, with what does not depend on the row worked out once."""
    plans = {language: _Plan(spec, language) for language in spec.definitions}
    primary = plans[spec.language]
    verified = spec.verified
    if primary.simple and len(plans) == 1:
        return _simple_checker(primary, verified, spec.language)

    def check(values: dict[str, str]) -> RowCheck:
        note = None
        plan = primary
        chosen = values.pop(LANGUAGE_COLUMN, "") if verified else ""
        if chosen and chosen != spec.language:
            if chosen in plans:
                plan = plans[chosen]
            else:
                note = LANGUAGE_FALLBACK
        params, reason = plan.check(values)
        if reason is not None:
            if chosen:  # an invalid record keeps the row as it was
                params[LANGUAGE_COLUMN] = chosen
        elif plan is not primary:
            params[LANGUAGE_COLUMN] = plan.language
        return RowCheck(params, reason, note)

    return check


def _simple_checker(plan: _Plan, verified: bool, language: str) -> RowChecker:
    """Only required text variables (today's `--param` campaigns, plain bodies): a few
    C-level checks over the whole row."""
    columns = [column for column, _ in plan.fields]

    def check(values: dict[str, str]) -> RowCheck:
        note = None
        if verified and LANGUAGE_COLUMN in values:
            chosen = values[LANGUAGE_COLUMN]
            if chosen and chosen != language:
                note = LANGUAGE_FALLBACK
        row = [values.get(column, "") for column in columns]
        if "" in row:
            return RowCheck(values, MISSING, note)
        joined = "\x00".join(row)
        if len(joined) > BODY_PARAM_MAX and any(len(v) > BODY_PARAM_MAX for v in row):
            return RowCheck(values, TOO_LONG, note)
        if _BAD_TEXT.search(joined):
            return RowCheck(values, BAD_TEXT, note)
        if verified:
            values.pop(LANGUAGE_COLUMN, None)  # one language: the contact gets the campaign's
        return RowCheck(values, None, note)

    return check


class _Plan:
    """How to check a row in one language: its per-contact slots and derived values."""

    def __init__(self, spec: CampaignTemplate, language: str) -> None:
        self.language = language
        self.fields: list[tuple[str, Slot]] = []
        self.currencies: list[tuple[str, str, str, str]] = []  # variable's key, amount, code, fb
        constants = spec.constants
        for slot in spec.slots(language):
            if spec.per_contact(slot):
                self.fields.append((spec.column(slot.key), slot))
        for variable, value_type in spec.param_types.items():
            if value_type is ValueType.CURRENCY:
                key = f"body.{variable}"
                self.currencies.append(
                    (
                        key,
                        spec.column(f"{key}.amount"),
                        spec.column(f"{key}.code"),
                        spec.column(f"{key}.fallback"),
                    )
                )
        self.constants: Mapping[str, str] = constants
        self.simple = not self.currencies and all(
            slot.required and slot.check is Check.TEXT and slot.max_length == BODY_PARAM_MAX
            for _, slot in self.fields
        )

    def check(self, values: dict[str, str]) -> tuple[dict[str, str], str | None]:
        params: dict[str, str] = {}
        for column, slot in self.fields:
            value = values.get(column, "")
            if not value:
                if slot.required:
                    return values, MISSING
                continue
            problem = value_problem(slot, value)
            if problem is not None:
                return values, problem
            params[column] = value
        for key, amount_column, code_column, fallback_column in self.currencies:
            amount = params.get(amount_column) or self.constants.get(f"{key}.amount", "")
            code = params.get(code_column) or self.constants.get(f"{key}.code", "")
            scaled = amount_1000(amount)
            if scaled is None:
                return values, BAD_AMOUNT
            per_contact = amount_column in params or code_column in params
            if per_contact:
                params[f"{key}.amount_1000"] = str(scaled)
                if fallback_column not in params and f"{key}.fallback" not in self.constants:
                    params[f"{key}.fallback"] = f"{amount} {code}"
        return params, None
