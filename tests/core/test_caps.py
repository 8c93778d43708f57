"""Frequency caps per phone (core.caps): rule parsing and when a capped phone frees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.core.caps import (
    CapRule,
    category_counts,
    decide,
    frees_at,
    longest_period,
    parse_categories,
    parse_rule,
    parse_rules,
)

NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("1/24h", CapRule(1, 24 * H)),
        ("3/7d", CapRule(3, 7 * D)),
        (" 2 / 30m ", CapRule(2, timedelta(minutes=30))),
        ("10/2W", CapRule(10, 14 * D)),
        ("1000/90d", CapRule(1000, 90 * D)),
    ],
)
def test_rules_parse(text: str, rule: CapRule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not N/DURATION"),
        ("1", "not N/DURATION"),
        ("1/24", "not N/DURATION"),
        ("1/24x", "not N/DURATION"),
        ("one/24h", "not N/DURATION"),
        ("-1/24h", "not N/DURATION"),
        ("1.5/24h", "not N/DURATION"),
        ("0/24h", "count must be from 1"),
        ("1001/24h", "count must be from 1"),
        ("1/0h", "duration must be from 1m"),
        ("1/91d", "duration must be from 1m"),
    ],
)
def test_bad_rules_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(text)


def test_rules_print_back_and_duplicates_are_dropped() -> None:
    rules = parse_rules(["1/24h", "3/7d", "1/1d"])
    assert rules == (CapRule(1, D), CapRule(3, 7 * D))
    assert [str(r) for r in rules] == ["1/1d", "3/1w"]
    assert longest_period(rules) == 7 * D
    assert longest_period(()) == timedelta(0)


def test_categories_are_meta_spelling_and_unknown_counts_as_marketing() -> None:
    assert parse_categories(["marketing", " Utility", "MARKETING"]) == ("MARKETING", "UTILITY")
    with pytest.raises(ValueError, match="not a template category"):
        parse_categories(["promo"])
    with pytest.raises(ValueError, match="at least one"):
        parse_categories([])
    assert category_counts("MARKETING", ("MARKETING",))
    assert category_counts(None, ("MARKETING",))
    assert category_counts("", ("MARKETING",))
    assert not category_counts("UTILITY", ("MARKETING",))
    assert category_counts("utility", ("MARKETING", "UTILITY"))


def test_no_history_or_no_rule_is_free() -> None:
    assert frees_at([CapRule(1, D)], [], NOW) is None
    assert frees_at([], [NOW - H], NOW) is None


def test_one_a_day_frees_a_day_after_the_last_message() -> None:
    rules = [CapRule(1, D)]
    assert frees_at(rules, [NOW - 3 * H], NOW) == NOW + 21 * H
    # Exactly a period ago no longer counts; a second before still does.
    assert frees_at(rules, [NOW - D], NOW) is None
    assert frees_at(rules, [NOW - D + timedelta(seconds=1)], NOW) == NOW + timedelta(seconds=1)


def test_three_a_week_frees_when_the_oldest_of_the_last_three_ages_out() -> None:
    rules = [CapRule(3, 7 * D)]
    times = [NOW - 6 * D, NOW - 2 * D, NOW - D]
    assert frees_at(rules, times, NOW) == NOW + D
    assert frees_at(rules, times[1:], NOW) is None  # two in the week: one more may go
    # Five in the week (another daemon's, a cap lowered): wait until only two are left.
    five = [NOW - 6 * D, NOW - 5 * D, NOW - 4 * D, NOW - 2 * D, NOW - D]
    assert frees_at(rules, five, NOW) == NOW - 4 * D + 7 * D


def test_the_strictest_rule_decides() -> None:
    rules = [CapRule(1, D), CapRule(3, 7 * D)]
    times = [NOW - 5 * D, NOW - 3 * D, NOW - 2 * D]
    assert frees_at(rules, times, NOW) == NOW + 2 * D  # the week's rule, the day's is free
    assert frees_at(rules, [*times, NOW - H], NOW) == NOW + 4 * D  # four in the week
    assert frees_at(rules, [NOW - H], NOW) == NOW + 23 * H  # the day's rule only


def test_order_of_history_does_not_matter() -> None:
    rules = [CapRule(2, D)]
    times = [NOW - H, NOW - 5 * H, NOW - 2 * H]
    assert frees_at(rules, times, NOW) == frees_at(rules, sorted(times), NOW) == NOW + 22 * H


def test_decide_sends_waits_or_fails_by_the_finish_by() -> None:
    rules = [CapRule(1, D)]
    candidates = [(1, "a"), (2, "b"), (3, "c")]
    history = [("b", NOW - 20 * H), ("c", NOW - 2 * H), ("x", NOW - H)]
    plain = decide(candidates, history, rules, NOW, None)
    assert plain.send == (1,)
    assert plain.wait == ((2, NOW + 4 * H), (3, NOW + 22 * H))
    assert plain.fail == ()
    # Finishing in 10 h: b is free in time, c not.
    paced = decide(candidates, history, rules, NOW, NOW + 10 * H)
    assert paced.send == (1,)
    assert paced.wait == ((2, NOW + 4 * H),)
    assert paced.fail == ((3, NOW + 22 * H),)
    # The finish-by has passed: every capped contact fails.
    late = decide(candidates, history, rules, NOW, NOW - H)
    assert late.wait == () and [i for i, _ in late.fail] == [2, 3]
