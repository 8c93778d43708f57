"""Pure decisions of listening: opt-out keywords, failed statuses classified by the send
answers' table (one function, both paths), template and number health."""

from __future__ import annotations

from unittest import mock

import pytest

from daemon.core import failed_status, outcomes
from daemon.core.failed_status import FailedAction, classify_failed_status
from daemon.core.health import (
    TemplateAction,
    number_event_effect,
    template_status_effect,
)
from daemon.core.optout import DEFAULT_RULES, OptOutRules, normalise
from daemon.core.outcomes import OutcomeKind, classify_response


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        "Stop!",
        " stop. ",
        "ODHLÁSIT",
        "odhlasit",
        "Odhlásit se",
        "STOPP",
        "Stopp!",
        "BAJA",
        "¡Baja!",
        "baja",
        "UNSUBSCRIBE",
        "Unsubscribe.",
        "Arrêt",
        "ARRET",
        "Stop promotions",
        "СТОП",
        "abmelden",
    ],
)
def test_opt_out_keywords_in_several_languages_match_whatever_case_accents_punctuation(
    text: str,
) -> None:
    assert DEFAULT_RULES.text_opts_out(text)


@pytest.mark.parametrize(
    "text",
    [
        "stop sending me ads",
        "don't stop",
        "stopped",
        "Thanks!",
        "",
        None,
        "STOP " * 100,
        "bajar",
        "nonstop",
    ],
)
def test_a_sentence_or_another_word_is_not_an_opt_out(text: str | None) -> None:
    assert not DEFAULT_RULES.text_opts_out(text)


def test_payloads_match_exactly_and_keywords_are_configurable() -> None:
    rules = OptOutRules.from_config("Konec, nechci", "NO_MORE")
    assert rules.payload_opts_out("NO_MORE") and not rules.payload_opts_out("no_more")
    assert rules.text_opts_out("KONEC!") and rules.text_opts_out("Nechci")
    assert not rules.text_opts_out("STOP")
    assert DEFAULT_RULES.opts_out(None, "STOP_PROMOTIONS")
    assert normalise("Stop  promotions.") == "stop promotions"


# The same code gives the same class on both paths: a send's answer and a failed status.
CASES = [
    (131000, OutcomeKind.TRANSIENT, FailedAction.RETRY),
    (131016, OutcomeKind.TRANSIENT, FailedAction.RETRY),
    (2, OutcomeKind.TRANSIENT, FailedAction.RETRY),
    (130429, OutcomeKind.THROTTLED, FailedAction.RETRY),
    (131049, OutcomeKind.RETRY_LATER, FailedAction.RETRY_LATER),
    (131056, OutcomeKind.RETRY_LATER, FailedAction.RETRY_LATER),
    (132015, OutcomeKind.FATAL, FailedAction.TEMPLATE_HELD),
    (131050, OutcomeKind.PERMANENT, FailedAction.FAIL),
    (131026, OutcomeKind.PERMANENT, FailedAction.FAIL),
    (130472, OutcomeKind.PERMANENT, FailedAction.FAIL),
    (132016, OutcomeKind.FATAL, FailedAction.FAIL),
    (999999, OutcomeKind.PERMANENT, FailedAction.FAIL),  # unknown code in a webhook
]


@pytest.mark.parametrize(("code", "send_kind", "action"), CASES)
def test_failed_statuses_and_send_answers_share_one_table(
    code: int, send_kind: OutcomeKind, action: FailedAction
) -> None:
    error = {"code": code, "title": "t", "error_data": {"details": "d"}}
    sent = classify_response(400, {"error": {**error, "message": f"(#{code}) t"}}, attempt=1)
    if code != 999999:  # an unknown code in a sync answer falls back to its HTTP status
        assert sent.kind is send_kind
    verdict = classify_failed_status(error)
    assert verdict.action is action
    assert verdict.outcome.error_code == code and verdict.outcome.error_details == "d"


def test_both_paths_call_the_same_classify_function() -> None:
    real = outcomes.classify_error_object
    with (
        mock.patch.object(outcomes, "classify_error_object", wraps=real) as send_path,
        mock.patch.object(failed_status, "classify_error_object", wraps=real) as status_path,
    ):
        outcomes.classify_response(500, {"error": {"code": 131000}}, attempt=1)
        classify_failed_status({"code": 131000})
    assert send_path.call_count == 1 and status_path.call_count == 1
    assert failed_status.classify_error_object is outcomes.classify_error_object


def test_retry_later_waits_24_hours_and_template_held_waits_for_approval() -> None:
    assert classify_failed_status({"code": 131049}).retry_after_s == 24 * 3600
    held = classify_failed_status({"code": 132015})
    assert held.action is FailedAction.TEMPLATE_HELD and held.retry_after_s == 3 * 3600
    assert classify_failed_status(None).action is FailedAction.FAIL


@pytest.mark.parametrize(
    ("event", "status", "action"),
    [
        ("PAUSED", "PAUSED", TemplateAction.PAUSE),
        ("DISABLED", "DISABLED", TemplateAction.PAUSE),
        ("REJECTED", "REJECTED", TemplateAction.PAUSE),
        ("FLAGGED", "FLAGGED", TemplateAction.PAUSE),
        ("approved", "APPROVED", TemplateAction.RESUME),
        ("REINSTATED", "APPROVED", TemplateAction.RESUME),
        ("PENDING", "PENDING", TemplateAction.RECORD),
        ("IN_APPEAL", "IN_APPEAL", TemplateAction.RECORD),
    ],
)
def test_template_status_events(event: str, status: str, action: TemplateAction) -> None:
    effect = template_status_effect(event)
    assert (effect.catalogue_status, effect.action) == (status, action)


@pytest.mark.parametrize(
    ("event", "factor", "upgraded"),
    [
        ("FLAGGED", 0.5, None),
        ("DOWNGRADE", 0.5, None),
        ("UNFLAGGED", 1.0, None),
        ("UPGRADE", 1.0, None),
        ("THROUGHPUT_UPGRADE", None, True),
        ("ONBOARDING", None, None),
    ],
)
def test_number_events(event: str, factor: float | None, upgraded: bool | None) -> None:
    effect = number_event_effect(event, 0.5)
    assert (effect.marketing_rate_factor, effect.throughput_upgraded) == (factor, upgraded)


def test_a_failed_131026_status_retries_the_first_attempt_once_and_fails_a_later_one() -> None:
    error = {"code": 131026, "title": "Message undeliverable", "error_data": {"details": "d"}}
    first = classify_failed_status(error, attempt=1)
    assert (first.action, first.retry_after_s) == (FailedAction.RETRY, 0.0)
    assert first.outcome.error_code == 131026 and first.outcome.error_details == "d"
    assert classify_failed_status(error, attempt=2).action is FailedAction.FAIL
    assert classify_failed_status(error, attempt=None).action is FailedAction.FAIL
    # the send answer stays permanent: Meta answers it at once for a number not on WhatsApp
    sent = classify_response(400, {"error": {**error, "message": "(#131026) x"}}, attempt=1)
    assert sent.kind is OutcomeKind.PERMANENT
