"""Finish-by pacing (`campaign create|update --finish-by TIME`): the contacts a campaign still
has to send, spread evenly up to its finish time; pure arithmetic on given times.

`paced_rate` is the rate that sends `remaining` contacts by `finish_by` (never above the
number's rate); the claimer recomputes it as the campaign runs (contacts fail, are retried,
are added), so the last contact leaves close to the finish time whatever happened meanwhile.
`ClaimAllowance` turns that rate into how many contacts the claimer may take now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

MIN_RATE_PER_S: Final = 0.001
"""A paced campaign never stalls: at least one message in ~17 minutes."""


def paced_rate(remaining: int, now: datetime, finish_by: datetime, ceiling: float) -> float:
    """Messages per second that send `remaining` contacts evenly from `now` until `finish_by`,
    at most `ceiling` (the sending number's rate); `ceiling` once the finish time has passed.
    Both times aware."""
    seconds = (finish_by - now).total_seconds()
    if seconds <= 0:
        return ceiling
    if remaining <= 0:
        return min(ceiling, MIN_RATE_PER_S)
    return min(ceiling, max(MIN_RATE_PER_S, remaining / seconds))


class ClaimAllowance:
    """Contacts a paced campaign may claim: `rate` a second, saved up to `burst_s` seconds'
    worth (at least one contact). Times are monotonic seconds, passed in."""

    def __init__(self, rate: float, now: float, burst_s: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.rate = rate
        self._burst_s = burst_s
        self._tokens = 1.0
        self._updated = now

    @property
    def _cap(self) -> float:
        return max(1.0, self.rate * self._burst_s)

    def _advance(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self._cap, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def set_rate(self, rate: float, now: float) -> None:
        """A new rate from `now` on (what accrued so far is kept, within the new cap)."""
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self._advance(now)
        self.rate = rate
        self._tokens = min(self._tokens, self._cap)

    def available(self, now: float) -> int:
        """Whole contacts that may be claimed now."""
        self._advance(now)
        return int(self._tokens)

    def take(self, n: int, now: float) -> None:
        """`n` contacts were claimed (at most `available`)."""
        self._advance(now)
        self._tokens -= n

    @property
    def step(self) -> int:
        """How many to claim at a time: a fifth of a second's worth, at least one."""
        return max(1, int(self.rate * 0.2))

    def wait_s(self, now: float, n: int = 1) -> float:
        """Seconds until `n` contacts (at most the cap) may be claimed (0: now)."""
        self._advance(now)
        need = min(float(n), self._cap)
        return 0.0 if self._tokens >= need else (need - self._tokens) / self.rate
