"""What a send attempt's outcome does to its contact: the pure half of the record step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from daemon.core.outcomes import Outcome, OutcomeKind
from daemon.core.retry import RetryPolicy
from daemon.core.states import ContactState


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of a contact after one send: its next state, when to try again, the error to
    keep, whether to suppress the number."""

    state: ContactState
    next_attempt_at: datetime | None = None
    error_code: int | None = None
    error_title: str | None = None
    suppress: bool = False


SENT = Decision(ContactState.SENT)
"""What every accepted send decides: one immutable value (the sender's hot path uses it
without calling `decide`)."""


def decide(outcome: Outcome, attempt: int, policy: RetryPolicy, now: datetime) -> Decision:
    """The contact's next state after attempt number `attempt` (1-based) ended with `outcome`.

    FATAL outcomes are not decided here: they pause the whole campaign and the contact is
    released unsent (see the engine), since the next contact would fail the same way.
    """
    kind = outcome.kind
    if kind is OutcomeKind.ACCEPTED:
        return SENT
    if kind is OutcomeKind.PERMANENT:
        return Decision(
            ContactState.SENDING_FAILED,
            error_code=outcome.error_code,
            error_title=outcome.error_title,
            suppress=outcome.suppress_recipient,
        )
    if kind is OutcomeKind.FATAL:
        raise ValueError("a campaign-fatal outcome is handled by pausing the campaign")
    if kind is OutcomeKind.RETRY_LATER:
        delay: float | None = outcome.retry_after_s if attempt < policy.max_attempts else None
    else:  # TRANSIENT, THROTTLED
        delay = policy.next_delay(attempt)
    if delay is None:
        return Decision(
            ContactState.ERROR, error_code=outcome.error_code, error_title=outcome.error_title
        )
    return Decision(
        ContactState.RETRY_SCHEDULED,
        next_attempt_at=now + timedelta(seconds=delay),
        error_code=outcome.error_code,
        error_title=outcome.error_title,
    )
