"""The refusal breaker counts identical request-shaped refusals in a row, per campaign."""

from __future__ import annotations

import pytest

from daemon.core.breaker import RefusalBreaker
from daemon.core.outcomes import REQUEST_SHAPED_CODES, Outcome, OutcomeKind

K = OutcomeKind


def refused(code: int) -> Outcome:
    return Outcome(K.PERMANENT, error_code=code, error_title="Parameter format mismatch")


@pytest.mark.parametrize("code", sorted(REQUEST_SHAPED_CODES))
def test_n_identical_refusals_in_a_row_trip_it_once(code: int) -> None:
    breaker = RefusalBreaker(3)
    verdicts = [breaker.observe(7, refused(code)) for _ in range(5)]
    assert verdicts[:2] == [None, None] and verdicts[3:] == [None, None]
    assert verdicts[2] is not None and f"3 sends in a row refused with code {code}" in verdicts[2]


def test_the_request_shaped_codes_are_the_issue_s() -> None:
    assert {100, 131008, 131009, 132000, 132012, 132018, 135000} == REQUEST_SHAPED_CODES


@pytest.mark.parametrize(
    "between",
    [
        Outcome(K.ACCEPTED, wamid="wamid.1"),
        refused(132000),  # another code starts its own run
        Outcome(K.PERMANENT, error_code=131026),  # about the person: ends the run
    ],
)
def test_a_different_answer_ends_the_run(between: Outcome) -> None:
    breaker = RefusalBreaker(3)
    breaker.observe(1, refused(132012))
    breaker.observe(1, refused(132012))
    breaker.observe(1, between)
    assert breaker.observe(1, refused(132012)) is None
    assert breaker.observe(1, refused(132012)) is None


def test_transient_answers_neither_count_nor_end_a_run() -> None:
    breaker = RefusalBreaker(2)
    breaker.observe(1, refused(131008))
    breaker.observe(1, Outcome(K.TRANSIENT, error_code=131000))
    breaker.observe(1, Outcome(K.THROTTLED, error_code=130429))
    assert breaker.observe(1, refused(131008)) is not None


def test_campaigns_are_counted_apart_and_zero_disables_it() -> None:
    breaker = RefusalBreaker(2)
    breaker.observe(1, refused(100))
    assert breaker.observe(2, refused(100)) is None
    assert breaker.observe(1, refused(100)) is not None
    off = RefusalBreaker(0)
    assert all(off.observe(1, refused(100)) is None for _ in range(50))


def test_forget_starts_counting_afresh() -> None:
    breaker = RefusalBreaker(2)
    breaker.observe(1, refused(100))
    breaker.forget(1)
    assert breaker.observe(1, refused(100)) is None
