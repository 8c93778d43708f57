"""Send windows in the recipient's local time, as functions of `now` (no clock read here).

A window is written `"Mon-Fri 09:00-20:00, Sat 10:00-14:00"`: comma-separated rules, each a
day or a range of days (`Mon`, `Mon-Fri`, `Fri-Mon` wraps, `Daily`) and one or more ranges of
local wall time (`09:00-12:00 13:00-17:00`; `24:00` ends at midnight; an end at or before the
start runs past midnight into the next day, e.g. `Fri 22:00-02:00`).

`open_interval(window, now, zone)` gives the interval in which the window is open at `now`, or
the next one: both ends as UTC instants, adjacent and overlapping ranges merged. Daylight saving
time is handled per date: a wall time that does not exist that day (the spring gap) is the
instant the clocks jump (the first existing time after it); a wall time that happens twice
(the autumn overlap) is its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX: Final = {name.lower(): i for i, name in enumerate(DAY_NAMES)}
_ALL_DAYS: Final = frozenset(range(7))
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
MINUTES_PER_DAY: Final = 24 * 60
# How far `open_interval` looks ahead: every window opens at least once a week.
_LOOK_DAYS: Final = 9


class WindowError(ValueError):
    """A window text that cannot be read; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class WindowRule:
    """Days of the week (0 = Monday) and wall-time ranges in minutes after midnight; an end at
    or before the start runs into the next day."""

    days: frozenset[int]
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SendWindow:
    """A parsed window: its rules, and `text`, the canonical form stored and shown."""

    rules: tuple[WindowRule, ...]

    @property
    def text(self) -> str:
        """The canonical text, e.g. "Mon-Fri 09:00-20:00, Sat 10:00-14:00"."""
        return ", ".join(f"{_days_text(r.days)} {_ranges_text(r.ranges)}" for r in self.rules)


def parse_window(text: str) -> SendWindow:
    """The window written `text`; WindowError naming what is wrong."""
    rules: list[WindowRule] = []
    if not text.strip():
        raise WindowError("empty send window (e.g. 'Mon-Fri 09:00-20:00')")
    for part in text.split(","):
        words = part.split()
        if len(words) < 2:
            raise WindowError(
                f"{part.strip()!r}: expected DAYS HH:MM-HH:MM, e.g. Mon-Fri 09:00-17:00"
            )
        days = _parse_days(words[0])
        ranges = tuple(_parse_range(w) for w in words[1:])
        rules.append(WindowRule(days, ranges))
    return SendWindow(tuple(rules))


def _parse_days(word: str) -> frozenset[int]:
    lowered = word.lower()
    if lowered == "daily":
        return _ALL_DAYS
    first, sep, last = lowered.partition("-")
    start = _day(first, word)
    if not sep:
        return frozenset({start})
    span = (_day(last, word) - start) % 7
    return frozenset((start + k) % 7 for k in range(span + 1))


_FULL_DAY_NAMES: Final = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)


def _day(name: str, word: str) -> int:
    if name in _DAY_INDEX:
        return _DAY_INDEX[name]
    if name in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(name)
    raise WindowError(f"{word!r}: days are Mon..Sun, a range such as Mon-Fri, or Daily")


def _parse_range(word: str) -> tuple[int, int]:
    match = _RANGE.match(word)
    if match is None:
        raise WindowError(f"{word!r}: a time range is HH:MM-HH:MM, e.g. 09:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise WindowError(f"{word!r}: not a time of day (00:00..23:59, or 24:00 as an end)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end % MINUTES_PER_DAY and end != MINUTES_PER_DAY:
        raise WindowError(f"{word!r}: the range is empty (start and end are the same)")
    return start, end


def _days_text(days: frozenset[int]) -> str:
    if days == _ALL_DAYS:
        return "Daily"
    ordered = sorted(days)
    # A contiguous run, possibly wrapping past Sunday: written as FIRST-LAST.
    for first in ordered:
        run = [(first + k) % 7 for k in range(len(days))]
        if set(run) == days:
            return DAY_NAMES[first] if len(run) == 1 else f"{DAY_NAMES[first]}-{DAY_NAMES[run[-1]]}"
    raise WindowError("days must be one day or a range of days")  # pragma: no cover


def _ranges_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return " ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in ranges)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo | None:
    """The IANA zone called `name`, None when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def check_zone(name: str) -> str:
    """`name` when it is an IANA time zone (e.g. America/New_York); WindowError else."""
    if zone_named(name) is None:
        raise WindowError(f"{name!r} is not a time zone (IANA name, e.g. America/New_York)")
    return name


def wall_instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall time `minutes` after midnight of `day` in `zone` (1440: the next
    midnight). A wall time skipped by a DST change is the instant the clocks jumped; one that
    happens twice is its first occurrence."""
    day = day + timedelta(days=minutes // MINUTES_PER_DAY)
    minutes %= MINUTES_PER_DAY
    wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    first = wall.replace(fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return first  # it exists (fold 0: the first occurrence when it happens twice)
    # In a gap: fold 0 reads it with the offset before the change (an instant after the jump),
    # fold 1 with the one after (before the jump); the jump lies in between, in whole seconds.
    low = wall.replace(fold=1).astimezone(UTC)  # before the jump
    high = first  # after it
    while (high - low) > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).replace(tzinfo=None) >= wall.replace(tzinfo=None):
            high = middle
        else:
            low = middle
    return high


def _intervals(window: SendWindow, around: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    found: list[tuple[datetime, datetime]] = []
    for offset in range(-1, _LOOK_DAYS):
        day = around + timedelta(days=offset)
        weekday = day.weekday()
        for rule in window.rules:
            if weekday not in rule.days:
                continue
            for start, end in rule.ranges:
                stop = end if end > start else end + MINUTES_PER_DAY
                found.append((wall_instant(day, start, zone), wall_instant(day, stop, zone)))
    found.sort()
    merged: list[tuple[datetime, datetime]] = []
    for opens, closes in found:
        if merged and opens <= merged[-1][1]:
            if closes > merged[-1][1]:
                merged[-1] = (merged[-1][0], closes)
        elif opens < closes:
            merged.append((opens, closes))
    return merged


def open_interval(window: SendWindow, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The window's open interval in `zone` that holds `now`, else the next one: (opens, closes)
    as aware UTC datetimes, opens <= now < closes when it is open. `now` must be aware."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    local_day = now.astimezone(zone).date()
    for start, end in _intervals(window, local_day, zone):
        if end > now:
            return start, end
    raise WindowError(f"the window {window.text!r} never opens")  # pragma: no cover


def is_open(window: SendWindow, now: datetime, zone: ZoneInfo) -> bool:
    """Whether the window is open at `now` in `zone`."""
    opens, _ = open_interval(window, now, zone)
    return opens <= now


def intervals_by_zone(
    window: SendWindow, zones: list[str], fallback: str, now: datetime
) -> dict[str, tuple[datetime, datetime]]:
    """Each zone name's open interval at `now` (`open_interval`); a name that is no zone is
    read as `fallback` (itself UTC when it is none)."""
    default = zone_named(fallback) or UTC_ZONE
    return {name: open_interval(window, now, zone_named(name) or default) for name in zones}


UTC_ZONE: Final = ZoneInfo("UTC")


def parse_moment(text: str, default_zone: str) -> datetime:
    """An ISO 8601 time (`2026-12-24T09:00`, `2026-12-24 09:00+01:00`, `...Z`) as an aware
    datetime; without an offset it is a wall time in `default_zone` (DST-safe, as in
    `wall_instant`). WindowError naming the expected form."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WindowError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-24T09:00 or 2026-12-24T09:00+01:00)"
        ) from None
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    zone = zone_named(default_zone)
    if zone is None:
        raise WindowError(f"{default_zone!r} is not a time zone")
    minutes = moment.hour * 60 + moment.minute
    exact = wall_instant(moment.date(), minutes, zone)
    return exact + timedelta(seconds=moment.second, microseconds=moment.microsecond)
