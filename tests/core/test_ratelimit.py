from __future__ import annotations

import heapq
import random
from bisect import bisect_left

import pytest

from daemon.core.ratelimit import RateLimiters, TokenBucket


def simulate(
    bucket: TokenBucket,
    *,
    workers: int,
    until: float,
    throttle_at: tuple[float, ...] = (),
    seed: int = 1,
) -> list[float]:
    """Send times of `workers` concurrent senders: each reserves, sleeps the returned delay,
    sends, gets the response 20-300 ms later, reports it to the bucket and reserves again.
    The first response at or after each time in `throttle_at` is a throttle; the others are
    successes. The bucket sees the clock move forward only, as with loop.time()."""
    rng = random.Random(seed)
    events = [(rng.uniform(0, 0.01), False) for _ in range(workers)]  # (time, is_response)
    heapq.heapify(events)
    pending_throttles = sorted(throttle_at)
    sends: list[float] = []
    while events[0][0] < until:
        now, is_response = heapq.heappop(events)
        if is_response and pending_throttles and now >= pending_throttles[0]:
            pending_throttles.pop(0)
            bucket.on_throttled(now)
        elif is_response:
            bucket.on_success(now)
        send_at = now + bucket.reserve(now)
        sends.append(send_at)
        heapq.heappush(events, (send_at + rng.uniform(0.02, 0.3), True))
    return sorted(sends)


def busiest_second(sends: list[float]) -> int:
    return max(bisect_left(sends, start + 1 - 1e-9) - i for i, start in enumerate(sends))


def sent_between(sends: list[float], start: float, end: float) -> int:
    return bisect_left(sends, end) - bisect_left(sends, start)


@pytest.mark.parametrize(
    ("rate", "burst", "workers"),
    [(80, 1, 100), (80, 80, 50), (20, 5, 10), (250, 25, 200), (1000, 50, 600)],
)
def test_saturated_senders_get_the_configured_rate_within_one_percent(
    rate: float, burst: float, workers: int
) -> None:
    sends = simulate(TokenBucket(rate, burst), workers=workers, until=22.0)
    achieved = sent_between(sends, 10.0, 20.0) / 10.0
    assert achieved == pytest.approx(rate, rel=0.01)


@pytest.mark.parametrize(
    ("rate", "burst", "workers"),
    [(80, 1, 100), (80, 80, 500), (20, 20, 100), (1000, 50, 600), (1000, 1000, 2000)],
)
def test_no_one_second_window_exceeds_rate_plus_burst(
    rate: float, burst: float, workers: int
) -> None:
    sends = simulate(TokenBucket(rate, burst), workers=workers, until=10.0)
    assert busiest_second(sends) <= rate + burst


@pytest.mark.parametrize("burst", [1, 10, 80])
def test_a_fresh_bucket_serves_its_burst_at_once_then_spaces_reservations(burst: int) -> None:
    bucket = TokenBucket(rate_per_s=80, burst=burst)
    assert [bucket.reserve(5.0) for _ in range(burst)] == [0.0] * burst
    queued = [bucket.reserve(5.0) for _ in range(4)]
    assert queued == pytest.approx([1 / 80, 2 / 80, 3 / 80, 4 / 80])


def test_reserving_several_tokens_waits_for_all_of_them() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=2)
    assert bucket.reserve(0.0, n=2) == 0.0
    assert bucket.reserve(0.0, n=3) == pytest.approx(0.3)


def test_demand_below_the_rate_never_waits() -> None:
    bucket = TokenBucket(rate_per_s=80, burst=1)
    assert all(bucket.reserve(n * 0.02) == 0.0 for n in range(1000))


def test_an_older_clock_reading_neither_adds_tokens_nor_returns_a_negative_wait() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=1)
    assert bucket.reserve(10.0) == 0.0
    assert bucket.reserve(9.95) == pytest.approx(0.15)
    assert bucket.reserve(10.0) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("configured", "throttles", "effective"),
    [
        (80, 1, 40),
        (80, 2, 20),
        (80, 3, 10),
        (80, 4, 5),
        (80, 5, 4),  # floor: 5% of configured
        (80, 20, 4),
        (1000, 10, 50),
        (10, 10, 1),  # floor: 1 msg/s
        (0.5, 3, 0.5),  # never above the configured rate, even at the floor
    ],
)
def test_each_throttle_halves_the_rate_down_to_a_floor(
    configured: float, throttles: int, effective: float
) -> None:
    bucket = TokenBucket(configured, burst=10)
    for n in range(throttles):
        bucket.on_throttled(now=n * 2.0)
    assert bucket.effective_rate == pytest.approx(effective)


def test_throttles_within_the_cooldown_count_once() -> None:
    bucket = TokenBucket(80, burst=10)
    for n in range(50):
        bucket.on_throttled(now=3.0 + n * 0.01)
    assert bucket.effective_rate == 40
    bucket.on_throttled(now=4.0)
    assert bucket.effective_rate == 20


def test_a_throttle_drains_the_burst() -> None:
    bucket = TokenBucket(80, burst=80)
    bucket.on_throttled(now=0.0)
    assert bucket.reserve(0.0) == pytest.approx(1 / 40)


@pytest.mark.parametrize(
    ("success_at", "effective"),
    [(0.0, 40), (1.0, 44), (5.0, 60), (10.0, 80), (30.0, 80)],
)
def test_successes_restore_five_percent_of_the_rate_per_second_up_to_configured(
    success_at: float, effective: float
) -> None:
    bucket = TokenBucket(80, burst=10)
    bucket.on_throttled(now=0.0)
    bucket.on_success(now=success_at)
    assert bucket.effective_rate == pytest.approx(effective)


def test_throttling_slows_the_senders_and_recovery_restores_the_rate() -> None:
    bucket = TokenBucket(100, burst=10)
    sends = simulate(bucket, workers=20, until=30.0, throttle_at=(5.0, 6.5))
    assert sent_between(sends, 3.0, 5.0) / 2 == pytest.approx(100, rel=0.02)
    assert sent_between(sends, 5.5, 6.5) == pytest.approx(50, abs=5)
    assert sent_between(sends, 7.0, 8.0) < 40
    assert sent_between(sends, 25.0, 29.0) / 4 == pytest.approx(100, rel=0.02)
    assert bucket.effective_rate == 100


@pytest.mark.parametrize("workers", [20, 200, 1000])
def test_rate_changes_never_let_queued_and_new_reservations_overlap(workers: int) -> None:
    sends = simulate(
        TokenBucket(100, burst=10), workers=workers, until=40.0, throttle_at=(5.0, 6.5, 12.0)
    )
    assert busiest_second(sends) <= 100 + 10


def test_set_rate_keeps_the_slow_down_in_proportion() -> None:
    bucket = TokenBucket(80, burst=80)
    bucket.on_throttled(now=0.0)
    bucket.set_rate(0.5, 40, burst=20)
    assert (bucket.configured_rate, bucket.effective_rate, bucket.burst) == (40, 20, 20)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (10, -1)])
def test_nonsense_buckets_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_each_sending_number_has_its_own_bucket() -> None:
    limiters = RateLimiters(rate_per_s=80, burst=1)
    first = limiters.bucket("111")
    assert limiters.bucket("111") is first
    assert first.reserve(0.0) == 0.0
    assert limiters.bucket("222").reserve(0.0) == 0.0
    first.on_throttled(0.0)
    assert limiters.effective_rates() == {"111": 40, "222": 80}


@pytest.mark.parametrize(("share", "rate", "burst"), [(1.0, 80, 20), (0.5, 40, 10), (0.25, 20, 5)])
def test_a_daemon_takes_its_share_of_each_number(share: float, rate: float, burst: float) -> None:
    bucket = RateLimiters(rate_per_s=80, burst=20, share=share).bucket("111")
    assert (bucket.configured_rate, bucket.burst) == (rate, burst)


def test_changing_the_share_rescales_existing_buckets() -> None:
    limiters = RateLimiters(rate_per_s=80, burst=20)
    bucket = limiters.bucket("111")
    limiters.set_share(1.0, 0.5)
    assert (limiters.share, bucket.configured_rate, bucket.burst) == (0.5, 40, 10)


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_shares_outside_zero_to_one_are_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        RateLimiters(80, 20, share=share)


@pytest.mark.parametrize(("rate", "burst"), [(200.0, 20.0), (80.0, 10.0), (1000.0, 50.0)])
def test_take_counts_sends_at_their_real_time_even_after_a_stall(rate: float, burst: float) -> None:
    """A consumer that wakes late (a 0.1 s stall every 300th wake-up) never exceeds
    rate + burst in any one second."""
    bucket = TokenBucket(rate, burst)
    now, sent, wakes = 0.0, [], 0
    while now < 10.0:
        wait = bucket.take(now)
        if wait == 0:
            sent.append(now)
            continue
        wakes += 1
        now += max(wait, 1e-9) + (0.1 if wakes % 300 == 0 else 0.0)
    busiest, j = 0, 0
    for i, t in enumerate(sent):
        while sent[j] <= t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    assert busiest <= rate + burst
    assert len(sent) / 10.0 >= rate * 0.75  # stalls lose time that the burst only partly regains
