from __future__ import annotations

import pytest

from daemon.core.limits import WINDOW_S, parse_tier, remaining_quota, window_frees_at

DAY = WINDOW_S


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        (250, 250),
        (2000, 2000),
        (10_000, 10_000),
        (100_000, 100_000),
        (1234, 1234),  # below the portfolio's tier, on purpose
        (0, None),
        (None, None),
        ("250", 250),
        ("2,000", 2000),
        ("10_000", 10_000),
        ("10K", 10_000),
        (" 100k ", 100_000),
        ("TIER_250", 250),
        ("TIER_2K", 2000),
        ("TIER_100K", 100_000),
        ("TIER_UNLIMITED", None),
        ("unlimited", None),
        ("Unlimited", None),
        ("0", None),
        ("", None),
    ],
)
def test_parse_tier_accepts_counts_tiers_and_unlimited(
    value: str | int | None, limit: int | None
) -> None:
    assert parse_tier(value) == limit


@pytest.mark.parametrize("value", [-1, "-250", "lots", "10M", "2.5K", "1e3", "TIER_", True])
def test_parse_tier_refuses_anything_else_naming_it(value: str | int) -> None:
    with pytest.raises(ValueError, match="invalid messaging limit"):
        parse_tier(value)


@pytest.mark.parametrize(
    ("limit", "recent_unique", "remaining"),
    [(None, 10**9, None), (250, 0, 250), (250, 249, 1), (250, 250, 0), (250, 300, 0)],
)
def test_remaining_quota(limit: int | None, recent_unique: int, remaining: int | None) -> None:
    assert remaining_quota(limit, recent_unique) == remaining


NOW = 10 * DAY


@pytest.mark.parametrize(
    ("times", "limit", "frees_at"),
    [
        ([], 3, None),
        ([NOW - 10, NOW - 5], 3, None),
        ([NOW - 30, NOW - 20, NOW - 10], 3, NOW - 30 + DAY),
        ([NOW - 30, NOW - 20, NOW - 10, NOW - 5], 3, NOW - 20 + DAY),
        ([NOW - DAY - 1, NOW - 20, NOW - 10], 3, None),  # the oldest already left the window
        ([NOW - DAY, NOW - 20, NOW - 10], 3, None),  # exactly 24 h ago: out
        ([NOW - DAY + 1, NOW - 20, NOW - 10], 3, NOW + 1),
        ([NOW - 3 * DAY, NOW - 2 * DAY, NOW - 1, NOW], 1, NOW + DAY),
        ([NOW - 10] * 5, 2, NOW - 10 + DAY),
        ([NOW - 30, NOW - 20, NOW - 10], None, None),
    ],
)
def test_window_frees_when_enough_old_recipients_age_out(
    times: list[float], limit: int | None, frees_at: float | None
) -> None:
    assert window_frees_at(times, limit, NOW) == frees_at


def test_window_length_is_configurable() -> None:
    assert window_frees_at([100.0, 200.0], 2, now=250.0, window_s=3600) == 3700.0


def test_a_zero_limit_in_the_window_check_is_an_error() -> None:
    with pytest.raises(ValueError):
        window_frees_at([], 0, NOW)
