"""Retry policies as tenacity objects: the send backoff schedule and database-write retries.

The engine does not loop around a send: a failed attempt becomes `retry_scheduled` with
`next_attempt_at = now + RetryPolicy.next_delay(attempt)`, and that delay is computed by the
very tenacity wait and stop objects the policy exposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

# A RetryCallState needs a retrying object; this one is only ever a placeholder.
_PLACEHOLDER_RETRYING: Final = tenacity.Retrying()


class WarningLogger(Protocol):
    """Anything that logs a warning like structlog does (this module imports no logger)."""

    def warning(self, event: str, /, **kw: Any) -> Any:
        """Log `event` with key/value pairs."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every attempt, the first included; waits grow from `initial_s`
    doubling up to `max_s`, plus a uniform jitter in [0, jitter_s] (also capped at `max_s`)."""

    max_attempts: int
    initial_s: float
    max_s: float
    jitter_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_s < 0 or self.max_s < self.initial_s or self.jitter_s < 0:
            raise ValueError("need 0 <= initial_s <= max_s and jitter_s >= 0")

    def wait_strategy(self) -> wait_base:
        """The waits between attempts, as a tenacity strategy."""
        return tenacity.wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_s, jitter=self.jitter_s
        )

    def stop_strategy(self) -> stop_base:
        """Stop after `max_attempts`, as a tenacity strategy."""
        return tenacity.stop_after_attempt(self.max_attempts)

    def next_delay(self, attempt: int) -> float | None:
        """Seconds to wait after attempt number `attempt` (1-based) failed; None when it was
        the last one allowed."""
        state = tenacity.RetryCallState(_PLACEHOLDER_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        if self.stop_strategy()(state):
            return None
        return float(self.wait_strategy()(state))


def database_retrying(
    retry_on: tuple[type[BaseException], ...],
    logger: WarningLogger,
    *,
    initial_s: float = 0.1,
    max_s: float = 3.0,
    jitter_s: float = 0.2,
    deadline_s: float | None = None,
    operation: str = "database_write",
) -> tenacity.AsyncRetrying:
    """Retry one database operation through outages (`async for attempt in ...: with attempt:`);
    call it per operation, the object keeps the state of its current run.

    Retries only `retry_on` (the database layer passes its connection-type errors, so this
    module stays free of drivers); never gives up unless `deadline_s` is given, after which
    the last error is re-raised as is. Each retry logs a `database_retry` warning.
    """

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "database_retry",
            operation=operation,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=repr(error),
        )

    stop: stop_base = (
        tenacity.stop_never if deadline_s is None else tenacity.stop_after_delay(deadline_s)
    )
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=jitter_s),
        stop=stop,
        before_sleep=log_retry,
        reraise=True,
    )
