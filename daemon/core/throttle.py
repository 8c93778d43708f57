"""A log throttle: at most so many lines per interval, the rest counted. Pure: the caller
gives the time.

A refused webhook request is logged; without a bound, an attacker sending thousands of bad
requests a second would turn each into a log line (CPU for the daemon, a flood for journald,
which then drops lines of its own choosing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogThrottle:
    """Lets `per_interval` events through per `interval_s` window; counts the others."""

    per_interval: int = 10
    interval_s: float = 1.0
    _window_start: float = float("-inf")
    _in_window: int = 0
    _suppressed: int = 0

    def allow(self, now: float) -> tuple[bool, int]:
        """Whether to log the event at `now`, and how many were suppressed since the last one
        logged (to report with it)."""
        if now - self._window_start >= self.interval_s:
            self._window_start = now
            self._in_window = 0
        if self._in_window >= self.per_interval:
            self._suppressed += 1
            return False, 0
        self._in_window += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed
