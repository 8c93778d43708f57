"""Messaging-limit arithmetic: a business portfolio may reach only N unique users per moving
24 h (tiers 250, 2,000, 10K, 100K, unlimited). None means unlimited throughout.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

WINDOW_S: Final = 24 * 3600.0
_UNLIMITED_WORDS: Final = frozenset({"", "0", "unlimited", "tier_unlimited", "none"})


def parse_tier(value: str | int | None) -> int | None:
    """The configured limit: 250, "2,000", "10K", Graph's "TIER_100K"...; 0, "unlimited" or
    None -> None.

    Any positive count is accepted, not only Meta's tiers: an operator may want to stay below
    the portfolio's limit (another system shares it).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"invalid messaging limit {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid messaging limit {value!r}: must be positive or 0")
        return value or None
    text = value.strip().lower()
    if text in _UNLIMITED_WORDS:
        return None
    digits = text.removeprefix("tier_").replace(",", "").replace("_", "")
    multiplier = 1
    if digits.endswith("k"):
        digits, multiplier = digits[:-1], 1000
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"invalid messaging limit {value!r}: use a count or 'unlimited'")
    return int(digits) * multiplier or None


def remaining_quota(limit: int | None, recent_unique: int) -> int | None:
    """How many more unique recipients fit now; None when unlimited."""
    if limit is None:
        return None
    return max(0, limit - recent_unique)


def window_frees_at(
    send_times_sorted: Sequence[float], limit: int | None, now: float, window_s: float = WINDOW_S
) -> float | None:
    """When the window next has room for one new recipient; None if it has room now.

    `send_times_sorted` holds one time per recipient (the latest send to them), ascending.
    """
    if limit is None:
        return None
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    first_in_window = bisect_right(send_times_sorted, now - window_s)
    in_window = len(send_times_sorted) - first_in_window
    if in_window < limit:
        return None
    # Enough of the oldest must age out to leave limit - 1 in the window.
    return send_times_sorted[first_in_window + in_window - limit] + window_s
