"""Per phone number throughput limits of the mock (pure: the caller passes the time)."""

from __future__ import annotations

from collections import deque
from typing import Literal, Protocol


class _Limiter(Protocol):
    def try_take(self, now: float) -> bool: ...


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; starts full."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def try_take(self, now: float) -> bool:
        """Take a token at ``now`` if one is left; whether one was."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SlidingWindow:
    """At most ``limit`` takes within any trailing window of ``window_s`` seconds."""

    __slots__ = ("limit", "stamps", "window_s")

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.stamps: deque[float] = deque()

    def try_take(self, now: float) -> bool:
        """Take a slot at ``now`` if the trailing window has one; whether it had."""
        horizon = now - self.window_s
        stamps = self.stamps
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if len(stamps) < self.limit:
            stamps.append(now)
            return True
        return False


class ThroughputLimiter:
    """One limiter per key (phone_number_id); ``rate`` None or 0 lets everything through."""

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        mode: Literal["token_bucket", "sliding_window"] = "token_bucket",
    ) -> None:
        self.rate = rate or 0.0
        self.burst = burst if burst is not None else max(1.0, self.rate)
        self.mode = mode
        self._limiters: dict[str, _Limiter] = {}

    @property
    def unlimited(self) -> bool:
        """Whether no limit applies at all."""
        return self.rate <= 0

    def allow(self, key: str, now: float) -> bool:
        """Whether a request for ``key`` at ``now`` is within the limit."""
        if self.rate <= 0:
            return True
        limiter = self._limiters.get(key)
        if limiter is None:
            if self.mode == "sliding_window":
                limiter = SlidingWindow(max(1, int(self.rate)))
            else:
                limiter = TokenBucket(self.rate, self.burst, now)
            self._limiters[key] = limiter
        return limiter.try_take(now)
