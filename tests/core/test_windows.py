"""Send windows in the recipient's local time: parsing, the next open interval, DST days."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from daemon.core.windows import (
    WindowError,
    check_zone,
    is_open,
    open_interval,
    parse_moment,
    parse_window,
    wall_instant,
    zone_named,
)

PRAGUE = zone_named("Europe/Prague")
NEW_YORK = zone_named("America/New_York")
assert PRAGUE is not None and NEW_YORK is not None


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Mon-Fri 09:00-20:00, Sat 10:00-14:00", "Mon-Fri 09:00-20:00, Sat 10:00-14:00"),
        ("mon-fri 9:00-17:00", "Mon-Fri 09:00-17:00"),
        ("Monday-Friday 09:00-12:00 13:00-17:00", "Mon-Fri 09:00-12:00 13:00-17:00"),
        ("daily 00:00-24:00", "Daily 00:00-24:00"),
        ("Mon-Sun 08:00-21:00", "Daily 08:00-21:00"),
        ("Fri-Mon 22:00-02:00", "Fri-Mon 22:00-02:00"),
        ("Sun 10:00-11:00", "Sun 10:00-11:00"),
    ],
)
def test_window_text_is_read_and_written_canonically(text: str, canonical: str) -> None:
    assert parse_window(text).text == canonical
    assert parse_window(canonical).text == canonical


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("Mon-Fri", "expected DAYS"),
        ("Mox 09:00-17:00", "days are Mon..Sun"),
        ("Mon-Fri 9-17", "HH:MM-HH:MM"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("Mon 09:00-24:30", "not a time of day"),
        ("Mon 09:00-09:00", "empty"),
    ],
)
def test_a_bad_window_is_one_clear_error(text: str, says: str) -> None:
    with pytest.raises(WindowError, match=says):
        parse_window(text)


def test_zone_names_are_checked() -> None:
    assert check_zone("America/New_York") == "America/New_York"
    with pytest.raises(WindowError, match="not a time zone"):
        check_zone("Mars/Olympus")


WORKDAY = parse_window("Mon-Fri 09:00-17:00")


@pytest.mark.parametrize(
    ("now", "opens", "closes"),
    [
        # Monday 2026-12-07, Prague is UTC+1: 08:59 local waits for 09:00.
        (utc(2026, 12, 7, 7, 59), utc(2026, 12, 7, 8, 0), utc(2026, 12, 7, 16, 0)),
        (utc(2026, 12, 7, 8, 0), utc(2026, 12, 7, 8, 0), utc(2026, 12, 7, 16, 0)),
        (utc(2026, 12, 7, 15, 59), utc(2026, 12, 7, 8, 0), utc(2026, 12, 7, 16, 0)),
        # 17:00 local: closed, next Tuesday 09:00.
        (utc(2026, 12, 7, 16, 0), utc(2026, 12, 8, 8, 0), utc(2026, 12, 8, 16, 0)),
        # Friday evening: Monday morning.
        (utc(2026, 12, 11, 18, 0), utc(2026, 12, 14, 8, 0), utc(2026, 12, 14, 16, 0)),
    ],
)
def test_open_interval_in_prague(now: datetime, opens: datetime, closes: datetime) -> None:
    assert open_interval(WORKDAY, now, PRAGUE) == (opens, closes)
    assert is_open(WORKDAY, now, PRAGUE) is (opens <= now)


def test_the_same_instant_is_open_in_prague_and_closed_in_new_york() -> None:
    now = utc(2026, 12, 7, 8, 0)  # 09:00 Prague, 03:00 New York
    assert is_open(WORKDAY, now, PRAGUE)
    assert not is_open(WORKDAY, now, NEW_YORK)
    assert open_interval(WORKDAY, now, NEW_YORK) == (
        utc(2026, 12, 7, 14, 0),
        utc(2026, 12, 7, 22, 0),
    )


# DST change days (2026): Prague springs forward on Sunday 29 March at 02:00 (to 03:00) and
# falls back on Sunday 25 October at 03:00 (to 02:00); New York on Sunday 8 March at 02:00 and
# Sunday 1 November at 02:00.
@pytest.mark.parametrize(
    ("zone", "window", "now", "opens", "closes"),
    [
        # The day before and after the change: the same wall times, another UTC offset.
        (
            "Europe/Prague",
            "Sat 09:00-17:00",
            utc(2026, 3, 28, 7, 0),
            utc(2026, 3, 28, 8, 0),
            utc(2026, 3, 28, 16, 0),
        ),
        (
            "Europe/Prague",
            "Mon 09:00-17:00",
            utc(2026, 3, 28, 7, 0),
            utc(2026, 3, 30, 7, 0),
            utc(2026, 3, 30, 15, 0),
        ),
        (
            "Europe/Prague",
            "Sun 09:00-17:00",
            utc(2026, 3, 29, 6, 0),
            utc(2026, 3, 29, 7, 0),
            utc(2026, 3, 29, 15, 0),
        ),
        (
            "Europe/Prague",
            "Sun 09:00-17:00",
            utc(2026, 10, 25, 6, 0),
            utc(2026, 10, 25, 8, 0),
            utc(2026, 10, 25, 16, 0),
        ),
        # A window spanning the change: 8 h of wall time are 7 h (spring) or 9 h (autumn).
        (
            "Europe/Prague",
            "Sun 00:00-08:00",
            utc(2026, 3, 28, 22, 0),
            utc(2026, 3, 28, 23, 0),
            utc(2026, 3, 29, 6, 0),
        ),
        (
            "Europe/Prague",
            "Sun 00:00-08:00",
            utc(2026, 10, 24, 21, 0),
            utc(2026, 10, 24, 22, 0),
            utc(2026, 10, 25, 7, 0),
        ),
        # Starting in the spring gap (02:30 does not exist): opens when the clocks jump.
        (
            "Europe/Prague",
            "Sun 02:30-04:00",
            utc(2026, 3, 28, 23, 0),
            utc(2026, 3, 29, 1, 0),
            utc(2026, 3, 29, 2, 0),
        ),
        # Starting in the autumn overlap (02:30 happens twice): the first time.
        (
            "Europe/Prague",
            "Sun 02:30-04:00",
            utc(2026, 10, 24, 23, 0),
            utc(2026, 10, 25, 0, 30),
            utc(2026, 10, 25, 3, 0),
        ),
        (
            "America/New_York",
            "Sun 09:00-17:00",
            utc(2026, 3, 8, 10, 0),
            utc(2026, 3, 8, 13, 0),
            utc(2026, 3, 8, 21, 0),
        ),
        (
            "America/New_York",
            "Sat 09:00-17:00",
            utc(2026, 3, 7, 10, 0),
            utc(2026, 3, 7, 14, 0),
            utc(2026, 3, 7, 22, 0),
        ),
        (
            "America/New_York",
            "Sun 09:00-17:00",
            utc(2026, 11, 1, 10, 0),
            utc(2026, 11, 1, 14, 0),
            utc(2026, 11, 1, 22, 0),
        ),
        (
            "America/New_York",
            "Sat 09:00-17:00",
            utc(2026, 10, 31, 10, 0),
            utc(2026, 10, 31, 13, 0),
            utc(2026, 10, 31, 21, 0),
        ),
        (
            "America/New_York",
            "Sun 01:00-03:00",
            utc(2026, 3, 8, 4, 0),
            utc(2026, 3, 8, 6, 0),
            utc(2026, 3, 8, 7, 0),
        ),
        (
            "America/New_York",
            "Sun 01:30-03:00",
            utc(2026, 11, 1, 4, 0),
            utc(2026, 11, 1, 5, 30),
            utc(2026, 11, 1, 8, 0),
        ),
        # Overnight window across the change, and a window ending in the gap.
        (
            "America/New_York",
            "Sat 22:00-02:30",
            utc(2026, 3, 8, 1, 0),
            utc(2026, 3, 8, 3, 0),
            utc(2026, 3, 8, 7, 0),
        ),
    ],
)
def test_dst_change_days(
    zone: str, window: str, now: datetime, opens: datetime, closes: datetime
) -> None:
    tz = zone_named(zone)
    assert tz is not None
    assert open_interval(parse_window(window), now, tz) == (opens, closes)


@pytest.mark.parametrize(
    ("zone", "day", "minutes", "expected"),
    [
        ("Europe/Prague", date(2026, 3, 29), 2 * 60, utc(2026, 3, 29, 1, 0)),
        ("Europe/Prague", date(2026, 3, 29), 2 * 60 + 59, utc(2026, 3, 29, 1, 0)),
        ("Europe/Prague", date(2026, 3, 29), 3 * 60, utc(2026, 3, 29, 1, 0)),
        ("Europe/Prague", date(2026, 10, 25), 2 * 60 + 30, utc(2026, 10, 25, 0, 30)),
        ("Europe/Prague", date(2026, 10, 25), 3 * 60, utc(2026, 10, 25, 2, 0)),
        ("America/New_York", date(2026, 3, 8), 2 * 60 + 15, utc(2026, 3, 8, 7, 0)),
        ("America/New_York", date(2026, 11, 1), 1 * 60 + 30, utc(2026, 11, 1, 5, 30)),
        ("Europe/Prague", date(2026, 12, 7), 24 * 60, utc(2026, 12, 7, 23, 0)),
    ],
)
def test_wall_instants_on_dst_days(zone: str, day: date, minutes: int, expected: datetime) -> None:
    tz = zone_named(zone)
    assert tz is not None
    assert wall_instant(day, minutes, tz) == expected


def test_adjacent_ranges_merge_into_one_interval() -> None:
    window = parse_window("Mon 09:00-12:00 12:00-17:00, Mon-Tue 17:00-24:00")
    opens, closes = open_interval(window, utc(2026, 12, 7, 9, 0), PRAGUE)
    assert (opens, closes) == (utc(2026, 12, 7, 8, 0), utc(2026, 12, 7, 23, 0))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        open_interval(WORKDAY, datetime(2026, 12, 7, 8, 0), PRAGUE)


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-12-24T09:00", "Europe/Prague", utc(2026, 12, 24, 8, 0)),
        ("2026-12-24 09:00:30", "UTC", datetime(2026, 12, 24, 9, 0, 30, tzinfo=UTC)),
        ("2026-12-24T09:00+01:00", "America/New_York", utc(2026, 12, 24, 8, 0)),
        ("2026-12-24T09:00Z", "Europe/Prague", utc(2026, 12, 24, 9, 0)),
        ("2026-07-01T09:00", "Europe/Prague", utc(2026, 7, 1, 7, 0)),  # summer time
        ("2026-03-29T02:30", "Europe/Prague", utc(2026, 3, 29, 1, 0)),  # in the gap
    ],
)
def test_times_are_read_with_or_without_their_zone(
    text: str, zone: str, expected: datetime
) -> None:
    assert parse_moment(text, zone) == expected


def test_a_bad_time_is_one_clear_error() -> None:
    with pytest.raises(WindowError, match="ISO 8601"):
        parse_moment("next tuesday", "UTC")
