"""Frequency caps per phone across campaigns (`[limits] per_contact = ["1/24h", "3/7d"]`):
at most N messages to one phone in any DURATION, counted over every campaign whose template
category counts (`per_contact_categories`, marketing only by default). Pure rule parsing and
evaluation; the times are passed in.

A rule is N/DURATION, DURATION a whole number and a unit: m (minutes), h (hours), d (days),
w (weeks), e.g. "1/24h", "3/7d", "10/30d". A phone's earlier messages are the times they were
claimed for sending (`contacts.claimed_at`); `frees_at` says when one more may go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

MAX_COUNT: Final = 1000
MIN_PERIOD: Final = timedelta(minutes=1)
MAX_PERIOD: Final = timedelta(days=90)
_UNITS: Final = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_RULE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([0-9]{1,9})\s*([a-z]+)\s*")
DEFAULT_CATEGORIES: Final = ("marketing",)
CATEGORIES: Final = frozenset({"marketing", "utility", "authentication", "service"})
UNKNOWN_CATEGORY_COUNTS_AS: Final = "MARKETING"
"""A campaign whose template's category is unknown (a name-only template) counts as
marketing: a cap errs on the side of the recipient."""


@dataclass(frozen=True, order=True)
class CapRule:
    """At most `count` messages to one phone in any `period`."""

    count: int
    period: timedelta

    def __str__(self) -> str:
        seconds = int(self.period.total_seconds())
        for unit in ("w", "d", "h", "m"):
            if seconds % _UNITS[unit] == 0:
                return f"{self.count}/{seconds // _UNITS[unit]}{unit}"
        return f"{self.count}/{seconds}s"  # pragma: no cover - periods are whole minutes


def parse_rule(text: str) -> CapRule:
    """ "3/7d" -> CapRule(3, 7 days); ValueError (one line, saying the form) otherwise."""
    found = _RULE.fullmatch(text.lower()) if isinstance(text, str) else None
    if found is None or found.group(3) not in _UNITS:
        raise ValueError(f"{text!r} is not N/DURATION (e.g. '1/24h', '3/7d'; units m, h, d, w)")
    count, amount = int(found.group(1)), int(found.group(2))
    period = timedelta(seconds=amount * _UNITS[found.group(3)])
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"{text!r}: the count must be from 1 to {MAX_COUNT}")
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        raise ValueError(f"{text!r}: the duration must be from 1m to {MAX_PERIOD.days}d")
    return CapRule(count, period)


def parse_rules(texts: Iterable[str]) -> tuple[CapRule, ...]:
    """Every rule of the list, in order (duplicates dropped); ValueError for the first bad one."""
    rules: list[CapRule] = []
    for text in texts:
        rule = parse_rule(text)
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)


def parse_categories(texts: Iterable[str]) -> tuple[str, ...]:
    """The template categories that count, as Meta spells them ("MARKETING"); ValueError for a
    category Meta does not have, or an empty list."""
    found: list[str] = []
    for text in texts:
        name = text.strip().lower() if isinstance(text, str) else ""
        if name not in CATEGORIES:
            raise ValueError(
                f"{text!r} is not a template category ({', '.join(sorted(CATEGORIES))})"
            )
        if name.upper() not in found:
            found.append(name.upper())
    if not found:
        raise ValueError("must name at least one template category (e.g. ['marketing'])")
    return tuple(found)


def category_counts(category: str | None, categories: Sequence[str]) -> bool:
    """Whether a campaign of this template category is capped (and counts towards caps)."""
    name = (category or "").strip().upper() or UNKNOWN_CATEGORY_COUNTS_AS
    return name in categories


def longest_period(rules: Sequence[CapRule]) -> timedelta:
    """How far back the history must be read for these rules (0 without rules)."""
    return max((r.period for r in rules), default=timedelta(0))


def frees_at(
    rules: Sequence[CapRule], earlier: Sequence[datetime], now: datetime
) -> datetime | None:
    """When one more message to a phone may go, given the times of its earlier messages
    (any order); None: it may go now.

    A message at time t counts for a rule while now < t + period. For each rule broken now
    (`count` or more messages in its period), the wait is until enough of the oldest ones
    age out to leave count - 1; the answer is the latest of those.
    """
    if not rules or not earlier:
        return None
    times = sorted(earlier)
    latest: datetime | None = None
    for rule in rules:
        inside = [t for t in times if t + rule.period > now]
        if len(inside) < rule.count:
            continue
        free = inside[len(inside) - rule.count] + rule.period
        latest = free if latest is None or free > latest else latest
    return latest


@dataclass(frozen=True)
class CapDecision:
    """What the claim does with each candidate: send, wait until a time, or fail."""

    send: tuple[int, ...]
    wait: tuple[tuple[int, datetime], ...]  # (contact id, when its cap frees it)
    fail: tuple[tuple[int, datetime], ...]  # (contact id, when it would have been free)


def decide(
    candidates: Sequence[tuple[int, str]],
    history: Sequence[tuple[str, datetime]],
    rules: Sequence[CapRule],
    now: datetime,
    finish_by: datetime | None,
) -> CapDecision:
    """Split claimed candidates (id, phone) by the phones' earlier messages (phone, time).

    A capped contact waits until its cap frees it; if that is after the campaign's finish-by
    (or the finish-by has passed), it could never be sent in time and fails instead.
    """
    by_phone: dict[str, list[datetime]] = {}
    for phone, at in history:
        by_phone.setdefault(phone, []).append(at)
    send: list[int] = []
    wait: list[tuple[int, datetime]] = []
    fail: list[tuple[int, datetime]] = []
    for contact_id, phone in candidates:
        free = frees_at(rules, by_phone.get(phone, ()), now)
        if free is None:
            send.append(contact_id)
        elif finish_by is not None and free > finish_by:
            fail.append((contact_id, free))
        else:
            wait.append((contact_id, free))
    return CapDecision(tuple(send), tuple(wait), tuple(fail))
