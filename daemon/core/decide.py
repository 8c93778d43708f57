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
    # The attempt's outcome is unknown (the API may have accepted it): recorded as one of the
    # contact's unknown_attempts, with outcome_unknown set (a receipt may still resolve it).
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class UnknownPolicy:
    """`recovery.unknown_outcome` and its bounds, for answers that leave it unknown whether
    the message was accepted: reconcile (wait `grace_s` for a receipt by callback data, then
    retry), error (never resend), retry (resend at once). At the `max_unknown`-th unknown
    outcome of a contact, or once its counted attempts are used up, it becomes error."""

    policy: str = "reconcile"
    grace_s: float = 30.0
    max_unknown: int = 10


SENT = Decision(ContactState.SENT)
"""What every accepted send decides: one immutable value (the sender's hot path uses it
without calling `decide`)."""


def decide(
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    now: datetime,
    unknown: UnknownPolicy | None = None,
    unknown_before: int = 0,
) -> Decision:
    """The contact's next state after attempt number `attempt` (1-based) ended with `outcome`.

    FATAL outcomes are not decided here: they pause the whole campaign and the contact is
    released unsent (see the engine), since the next contact would fail the same way.
    UNKNOWN outcomes follow `unknown` (default: reconcile); `unknown_before` is how many of
    the contact's earlier attempts had an unknown outcome. The rule is the SQL function
    unknown_outcome_state's (migration 0004), which lease recovery applies.
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
    if kind is OutcomeKind.UNKNOWN:
        return decide_unknown(
            outcome, attempt, policy, now, unknown or UnknownPolicy(), unknown_before
        )
    if kind is OutcomeKind.RETRY_LATER:
        delay: float | None = outcome.retry_after_s if attempt < policy.max_attempts else None
    else:  # TRANSIENT, THROTTLED
        delay = policy.next_delay(attempt)
        if delay is not None and outcome.retry_after_s is not None:  # 429's Retry-After
            delay = max(delay, outcome.retry_after_s)
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


def decide_unknown(
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    now: datetime,
    unknown: UnknownPolicy,
    unknown_before: int,
) -> Decision:
    """An answer that leaves the message's fate unknown: `attempt` (counted, 1-based) is not
    counted against max_attempts; error under the error policy, at the contact's
    `max_unknown`-th unknown outcome, or when its counted attempts before this one already
    use up max_attempts; else retry_scheduled, after the grace period under reconcile."""
    title = outcome.error_title or "outcome unknown"
    if (
        unknown.policy == "error"
        or attempt - 1 >= policy.max_attempts
        or unknown_before + 1 >= unknown.max_unknown
    ):
        return Decision(
            ContactState.ERROR, error_code=outcome.error_code, error_title=title, unknown=True
        )
    delay = unknown.grace_s if unknown.policy == "reconcile" else 0.0
    return Decision(
        ContactState.RETRY_SCHEDULED,
        next_attempt_at=now + timedelta(seconds=delay),
        error_code=outcome.error_code,
        error_title=title,
        unknown=True,
    )
