"""What a `failed` status webhook means for its contact, decided by the same code table as a
send's answer (`core.outcomes.classify_error_object`, the one function both paths call).

| send-answer class            | action        | the contact                                   |
|------------------------------|---------------|-----------------------------------------------|
| transient / throttled        | retry         | a new attempt now (131000 "try again", ...)   |
| retry later (131049, 131056) | retry_later   | a new attempt after `retry_after_s` (24 h)    |
| fatal 132015 (template held) | template_held | a new attempt once the template is APPROVED   |
| permanent, other fatal       | fail          | Delivery failed, with code, title and details |

131050 (the user stopped marketing messages) is permanent and also puts the phone on the
suppression list. A retry counts against `sender.max_attempts` like any attempt; once they are
used up the contact ends Delivery failed instead.

131026 (message undeliverable) is permanent in the table, as a send answer (Meta answers it at
once for a number that is not on WhatsApp). As a `failed` status it is the issue's "131026 as
transient": Meta's error-code reference lists, besides a number not on WhatsApp, causes that
pass (the user has not accepted the new Terms of Service, uses an outdated WhatsApp version,
an authentication template to +91) and BSPs report waves of asynchronous 131026 that a later
send gets through; Meta also says not to hammer such a user. So a failed 131026 status of a
contact's *first* attempt (our callback data says which) sends it once more, at once like
131000; one of a later attempt, or without our callback data, is Delivery failed. At most one
extra message per contact, and a campaign is never held open waiting for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from daemon.core.outcomes import RESUME_AFTER_S, Outcome, OutcomeKind, classify_error_object

TEMPLATE_HELD_CODES: Final = frozenset({132015})
"""Held for template pacing / quality and dropped: sent again once the template is approved."""
UNDELIVERABLE_CODES: Final = frozenset({131026})
"""Undeliverable as a failed status: retried once, on the first attempt only (see above)."""


class FailedAction(StrEnum):
    """What a failed status does to its contact (values as stored in status_receipts)."""

    RETRY = "retry"
    RETRY_LATER = "retry_later"
    TEMPLATE_HELD = "template_held"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class FailedVerdict:
    """A failed status, classified: the action, when to retry, and the error's text."""

    action: FailedAction
    retry_after_s: float | None
    outcome: Outcome


def classify_failed_status(
    error: Mapping[str, Any] | None, attempt: int | None = None
) -> FailedVerdict:
    """The action for a failed status whose first `errors[]` item is `error` (None: no error
    object at all, which is a plain delivery failure), of the attempt our callback data names
    (None: no callback data of ours)."""
    outcome = classify_error_object(error or {}, attempt=1)
    kind = outcome.kind
    code = outcome.error_code
    if code in UNDELIVERABLE_CODES:
        action = FailedAction.RETRY if attempt == 1 else FailedAction.FAIL
        return FailedVerdict(action, 0.0 if attempt == 1 else None, outcome)
    if kind in (OutcomeKind.TRANSIENT, OutcomeKind.THROTTLED):
        return FailedVerdict(FailedAction.RETRY, 0.0, outcome)
    if kind is OutcomeKind.RETRY_LATER:
        return FailedVerdict(FailedAction.RETRY_LATER, outcome.retry_after_s, outcome)
    if code in TEMPLATE_HELD_CODES:
        # The fallback when no APPROVED event ever comes: Meta's first pause lasts 3 h.
        return FailedVerdict(FailedAction.TEMPLATE_HELD, RESUME_AFTER_S.get(code), outcome)
    return FailedVerdict(FailedAction.FAIL, None, outcome)
