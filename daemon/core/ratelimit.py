"""Per sending number token buckets with adaptive slow-down; pure arithmetic on given times.

A reservation takes a token now, borrowing from the future when the bucket is empty, and
returns how long the caller must sleep before sending. Borrowed tokens queue later callers
behind earlier ones, so concurrent senders get evenly spaced slots, and over any interval of
T seconds at most `burst + rate * T` sends happen. A rate change applies to reservations made
after it; slots already handed out keep their times, so keep the queue short (reserve just
before sending, not far ahead).
"""

from __future__ import annotations

from typing import Final

DECREASE_FACTOR: Final = 0.5  # effective rate multiplier on each throttle signal
RECOVERY_PER_S: Final = 0.05  # fraction of the configured rate regained per second
MIN_RATE_FRACTION: Final = 0.05
MIN_RATE_PER_S: Final = 1.0
# Responses to requests already in flight report the same overload; one halving per
# cooldown keeps a burst of 429s from collapsing the rate to the floor.
THROTTLE_COOLDOWN_S: Final = 1.0
# The automatic burst (sender.burst = 0): a tenth of a second's worth of tokens. A fixed small
# burst starves a fast number: at 1,000 msg/s a burst of 10 left one token after the arrival
# jitter reserve, every late wake-up of the sender lost the tokens that accrued meanwhile, and
# the number sent 735 msg/s.
AUTO_BURST_SECONDS: Final = 0.1


def burst_for(rate_per_s: float, configured: float) -> float:
    """The bucket size for a number sending at `rate_per_s`: `configured` when it is set (> 0),
    else a tenth of the rate, at least 1."""
    if configured > 0:
        return configured
    return max(1.0, rate_per_s * AUTO_BURST_SECONDS)


class TokenBucket:
    """One sending number's bucket: `rate_per_s` tokens a second up to `burst`, slowed down on
    throttling answers and recovered gradually."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        *,
        decrease_factor: float = DECREASE_FACTOR,
        recovery_per_s: float = RECOVERY_PER_S,
        throttle_cooldown_s: float = THROTTLE_COOLDOWN_S,
    ) -> None:
        if rate_per_s <= 0 or burst < 0:
            raise ValueError("need rate_per_s > 0 and burst >= 0")
        self._configured = rate_per_s
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._updated = float("-inf")  # the first reading finds the bucket full
        self._decrease_factor = decrease_factor
        self._recovery_per_s = recovery_per_s
        self._cooldown_s = throttle_cooldown_s
        self._last_throttle: float | None = None
        self._last_recovery = 0.0

    @property
    def effective_rate(self) -> float:
        """The rate now, after any slow-down."""
        return self._rate

    @property
    def configured_rate(self) -> float:
        """The rate it was given (its share of the number's rate)."""
        return self._configured

    @property
    def burst(self) -> float:
        """The bucket's size."""
        return self._burst

    @property
    def min_rate(self) -> float:
        """The floor a slow-down never goes below."""
        return min(self._configured, max(MIN_RATE_PER_S, MIN_RATE_FRACTION * self._configured))

    def reserve(self, now: float, n: int = 1) -> float:
        """Take `n` tokens; the seconds to wait before sending (0 when they are there now)."""
        self._advance(now)
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        return max(0.0, self._updated - self._tokens / self._rate - now)

    def take(self, now: float) -> float:
        """Take a token if one is there now (returns 0), else take nothing and return the
        seconds until one will be. For a single consumer that sends right after a 0: every
        send is counted at the time it really happens, so a late wake-up (a busy event loop)
        can never let more than rate + burst through in any one second."""
        # `_advance`, inline: this runs once per message.
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate

    def on_throttled(self, now: float, retry_after_s: float | None = None) -> None:
        """A throughput error (429, 130429, 4, 80007): halve the rate and drop saved-up tokens;
        with the answer's `Retry-After`, no token comes before it has passed."""
        if retry_after_s is not None and retry_after_s > 0:
            self._advance(now)
            self._tokens = min(self._tokens, 1.0 - retry_after_s * self._rate)
        if self._last_throttle is not None and now - self._last_throttle < self._cooldown_s:
            return
        self._advance(now)
        self._tokens = min(self._tokens, 0.0)
        self._set_effective_rate(max(self.min_rate, self._rate * self._decrease_factor))
        self._last_throttle = now
        self._last_recovery = now

    def on_success(self, now: float) -> None:
        """An accepted send: regain rate gradually, never above the configured one."""
        if self._rate >= self._configured:
            return
        self._advance(now)
        regained = self._recovery_per_s * self._configured * max(0.0, now - self._last_recovery)
        self._set_effective_rate(min(self._configured, self._rate + regained))
        self._last_recovery = now

    def set_rate(self, now: float, rate_per_s: float, burst: float | None = None) -> None:
        """Change the configured rate (e.g. this daemon's share of the number), keeping any
        slow-down in proportion."""
        if rate_per_s <= 0 or (burst is not None and burst < 0):
            raise ValueError("need rate_per_s > 0 and burst >= 0")
        self._advance(now)
        self._set_effective_rate(rate_per_s * (self._rate / self._configured))
        self._configured = rate_per_s
        if burst is not None:
            self._burst = burst
            self._tokens = min(self._tokens, burst)

    def _set_effective_rate(self, rate: float) -> None:
        # Slots already handed out stay where they are: rescale the debt so that the queue
        # still ends at the same time, and later reservations come after it.
        if self._tokens < 0:
            self._tokens *= rate / self._rate
        self._rate = rate

    def _advance(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:  # a caller's slightly older clock reading adds nothing
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._updated = now


class RateLimiters:
    """One bucket per sending phone_number_id, created on first use.

    `share` is this daemon's fraction of each number's rate and burst, for several daemons
    sending from the same numbers.
    """

    def __init__(self, rate_per_s: float, burst: float, *, share: float = 1.0) -> None:
        _check_share(share)
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._share = share
        self._buckets: dict[str, TokenBucket] = {}
        # Per number (phone_number_quality_update): a factor on its rate (FLAGGED: 0.5 for
        # marketing) and a rate of its own (THROUGHPUT_UPGRADE: up to max_rate_per_second).
        self._factors: dict[str, float] = {}
        self._own_rates: dict[str, float] = {}

    @property
    def share(self) -> float:
        """This daemon's fraction of each number's rate."""
        return self._share

    def bucket(self, phone_number_id: str) -> TokenBucket:
        """The bucket of a sending number, made on first use."""
        bucket = self._buckets.get(phone_number_id)
        if bucket is None:
            bucket = TokenBucket(self._rate_of(phone_number_id), self._burst * self._share)
            self._buckets[phone_number_id] = bucket
        return bucket

    def _rate_of(self, number: str) -> float:
        base = self._own_rates.get(number, self._rate_per_s)
        return base * self._factors.get(number, 1.0) * self._share

    def set_share(self, now: float, share: float) -> None:
        """Give every bucket `share` of the configured rate and burst (from `now`)."""
        _check_share(share)
        self._share = share
        for number, bucket in self._buckets.items():
            bucket.set_rate(now, self._rate_of(number), self._burst * share)

    def set_number(
        self, now: float, number: str, factor: float = 1.0, rate_per_s: float | None = None
    ) -> bool:
        """Scale one number's rate by `factor` (0 < factor <= 1), and give it a rate of its
        own (None: the configured one); whether anything changed."""
        if not 0 < factor <= 1:
            raise ValueError(f"factor must be in (0, 1], got {factor}")
        old = (self._factors.get(number, 1.0), self._own_rates.get(number))
        if old == (factor, rate_per_s):
            return False
        self._factors[number] = factor
        if rate_per_s is None:
            self._own_rates.pop(number, None)
        else:
            self._own_rates[number] = rate_per_s
        bucket = self._buckets.get(number)
        if bucket is not None:
            bucket.set_rate(now, self._rate_of(number))
        return True

    def factor(self, number: str) -> float:
        """The number's rate factor now (1.0: not scaled)."""
        return self._factors.get(number, 1.0)

    def buckets(self) -> dict[str, TokenBucket]:
        """Every number's bucket made so far."""
        return dict(self._buckets)

    def effective_rates(self) -> dict[str, float]:
        """The effective rate of each number's bucket."""
        return {number: bucket.effective_rate for number, bucket in self._buckets.items()}


def _check_share(share: float) -> None:
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
