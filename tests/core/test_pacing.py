"""Finish-by pacing: the rate that spreads what is left evenly, and the claim allowance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.core.pacing import MIN_RATE_PER_S, ClaimAllowance, paced_rate

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("remaining", "seconds_left", "ceiling", "rate"),
    [
        (3600, 3600, 80.0, 1.0),  # one an hour's second
        (1000, 10, 80.0, 80.0),  # cannot make it: the number's rate, never above
        (100, 50, 80.0, 2.0),
        (0, 50, 80.0, MIN_RATE_PER_S),  # nothing left: stays alive for contacts added later
        (500, 0, 80.0, 80.0),  # finish time reached: full speed
        (500, -30, 80.0, 80.0),  # and past it
        (1, 10**7, 80.0, MIN_RATE_PER_S),  # never stalls
    ],
)
def test_paced_rate(remaining: int, seconds_left: float, ceiling: float, rate: float) -> None:
    finish_by = NOW + timedelta(seconds=seconds_left)
    assert paced_rate(remaining, NOW, finish_by, ceiling) == pytest.approx(rate)


def test_paced_rate_recomputed_as_the_campaign_runs_finishes_on_time() -> None:
    """Recomputing every 10 s while contacts drain (with a tenth of them failing and coming
    back as retries) ends the last contact within one interval of the finish time."""
    remaining, now, finish_by = 600, NOW, NOW + timedelta(seconds=300)
    sent_at = []
    while remaining > 0:
        rate = paced_rate(remaining, now, finish_by, 80.0)
        n = min(remaining, round(rate * 10))
        remaining -= n
        if len(sent_at) < 3:
            remaining += n // 10  # retries rejoin the queue
        sent_at.append(now)
        now += timedelta(seconds=10)
    assert abs((sent_at[-1] - finish_by).total_seconds()) <= 10


def test_allowance_hands_out_the_rate_and_saves_up_one_second() -> None:
    allowance = ClaimAllowance(5.0, now=0.0)
    assert allowance.available(0.0) == 1
    allowance.take(1, 0.0)
    assert allowance.available(0.0) == 0
    assert allowance.wait_s(0.0) == pytest.approx(0.2)
    assert allowance.available(0.6) == 3
    assert allowance.available(100.0) == 5  # saved up to one second's worth
    allowance.take(5, 100.0)
    claimed = 0
    t = 100.0
    while t < 110.0:
        t += 0.05
        n = allowance.available(t)
        allowance.take(n, t)
        claimed += n
    assert 49 <= claimed <= 51  # 10 s at 5/s


def test_allowance_rate_change_applies_from_then_on() -> None:
    allowance = ClaimAllowance(100.0, now=0.0)
    allowance.take(allowance.available(0.0), 0.0)
    allowance.set_rate(2.0, 0.0)
    assert allowance.available(0.4) == 0
    assert allowance.available(0.5) == 1
    with pytest.raises(ValueError):
        allowance.set_rate(0.0, 1.0)


def test_allowance_claims_a_fifth_of_a_second_at_a_time() -> None:
    allowance = ClaimAllowance(50.0, now=0.0)
    assert allowance.step == 10
    allowance.take(allowance.available(0.0), 0.0)
    assert allowance.wait_s(0.0, allowance.step) == pytest.approx(0.2)
    assert ClaimAllowance(2.0, now=0.0).step == 1
