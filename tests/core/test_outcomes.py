from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from daemon.core.outcomes import (
    CODE_KINDS,
    FATAL_REASONS,
    PERMANENT_CODES,
    RETRY_LATER_CODES,
    THROTTLED_CODES,
    TRANSIENT_CODES,
    OutcomeKind,
    classify_error_object,
    classify_response,
    classify_transport_error,
    pair_limit_retry_after_s,
    parse_retry_after,
)

DATA = Path(__file__).parent / "data"
K = OutcomeKind


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def error_body(code: int, message: str = "title", details: str | None = None) -> bytes:
    error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException"}
    error["code"] = code
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "Atrace"
    return json.dumps({"error": error}).encode()


# Every code of design.md §2 and the notes' §2 table, with the class we chose.
CODE_TABLE = [
    (1, K.TRANSIENT),
    (2, K.TRANSIENT),
    (131000, K.TRANSIENT),
    (131016, K.TRANSIENT),
    (133004, K.TRANSIENT),
    (4, K.THROTTLED),
    (80007, K.THROTTLED),
    (130429, K.THROTTLED),
    (131056, K.RETRY_LATER),
    (131049, K.RETRY_LATER),
    (131026, K.PERMANENT),
    (131050, K.PERMANENT),
    (130472, K.PERMANENT),
    (130497, K.PERMANENT),
    (130403, K.PERMANENT),
    (131021, K.PERMANENT),
    (131047, K.PERMANENT),
    (131009, K.PERMANENT),
    (131008, K.PERMANENT),
    (100, K.PERMANENT),
    (135000, K.PERMANENT),
    (0, K.FATAL),
    (190, K.FATAL),
    (3, K.FATAL),
    (10, K.FATAL),
    (200, K.FATAL),
    (250, K.FATAL),
    (299, K.FATAL),
    (131005, K.FATAL),
    (33, K.FATAL),
    (368, K.FATAL),
    (131031, K.FATAL),
    (131042, K.FATAL),
    (131048, K.FATAL),
    (131064, K.FATAL),
    (131045, K.FATAL),
    (133010, K.FATAL),
    (131037, K.FATAL),
    (131030, K.FATAL),
    (131051, K.FATAL),
    (131053, K.FATAL),
    (131063, K.FATAL),
    # Template errors (issue 16): count, format and bad-text refusals are per contact (the
    # breaker pauses a campaign after a run of them); the others hold the campaign.
    (132000, K.PERMANENT),
    (132012, K.PERMANENT),
    (132018, K.PERMANENT),
    (132001, K.FATAL),
    (132005, K.FATAL),
    (132007, K.FATAL),
    (131055, K.FATAL),
    (131058, K.FATAL),
    (132015, K.FATAL),
    (132016, K.FATAL),
    (131057, K.FATAL),
    (2494100, K.FATAL),
]


@pytest.mark.parametrize(("code", "kind"), CODE_TABLE)
@pytest.mark.parametrize("http_status", [400, 429, 500])
def test_error_code_decides_the_class_whatever_the_http_status(
    code: int, kind: OutcomeKind, http_status: int
) -> None:
    outcome = classify_response(http_status, error_body(code), attempt=1)
    assert outcome.kind is kind
    assert outcome.error_code == code
    assert outcome.error_title == "title"


def test_code_table_covers_exactly_the_tested_codes() -> None:
    tested = {code for code, _ in CODE_TABLE}
    assert tested <= set(CODE_KINDS)
    assert set(CODE_KINDS) - tested <= set(range(200, 300))


def test_code_groups_do_not_overlap() -> None:
    groups = [TRANSIENT_CODES, THROTTLED_CODES, RETRY_LATER_CODES, PERMANENT_CODES]
    groups.append(frozenset(FATAL_REASONS))
    assert sum(len(group) for group in groups) == len(CODE_KINDS)


@pytest.mark.parametrize(
    ("name", "wamid", "wa_id"),
    [
        (
            "send_success_example_response_openapi.json",
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA",
            "16505551234",
        ),
        (
            "send_success_single_product_normalized_input_openapi.json",
            "wamid.gBGGFlaCGg0xcvAdgmZ9plHrf2Mh-o",
            "16315555555",
        ),
        ("send_success_template_text_openapi.json", "wamid.gBGGSFcCNEOPAgkO_KJ55r4w_ww", None),
        (
            "send_success_nodejs_sdk_test.json",
            "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
            "16505076520",
        ),
        (
            "send_success_accepted_payment_cta_metadocs.json",
            "wamid.HBgNNTUxMTk4Nzg2NjI5NRUCABEYEjUxOTBGNEU0RDA2MjdCMUVBOQA=",
            "<PHONE_NUMBER>",
        ),
    ],
)
def test_real_success_responses_are_accepted_with_wamid(
    name: str, wamid: str, wa_id: str | None
) -> None:
    outcome = classify_response(200, sample(name), attempt=1)
    assert outcome.kind is K.ACCEPTED
    assert outcome.wamid == wamid
    assert outcome.message_status == "accepted"
    if wa_id is not None:
        assert outcome.wa_id == wa_id


def test_wa_id_is_stripped_of_stray_whitespace() -> None:
    outcome = classify_response(200, sample("send_success_template_text_openapi.json"), attempt=1)
    assert outcome.wa_id == "48XXXXXXXXX"


@pytest.mark.parametrize("status", ["accepted", "held_for_quality_assessment", "paused"])
def test_every_message_status_is_accepted_and_kept(status: str) -> None:
    body = {"messages": [{"id": "wamid.X", "message_status": status}]}
    outcome = classify_response(200, body, attempt=1)
    assert outcome.kind is K.ACCEPTED
    assert outcome.message_status == status


@pytest.mark.parametrize(
    ("name", "http_status", "kind", "code"),
    [
        ("error_130429_rate_limit_metadocs.json", 429, K.THROTTLED, 130429),
        ("error_4_rate_limited_is_transient_openapi.json", 429, K.THROTTLED, 4),
        ("error_2_server_error_is_transient_openapi.json", 500, K.TRANSIENT, 2),
        ("error_190_invalid_token_openapi.json", 401, K.FATAL, 190),
        ("error_190_expired_token_inner_pywa.json", 401, K.FATAL, 190),
        ("error_100_mm_api_not_template_metadocs.json", 400, K.PERMANENT, 100),
    ],
)
def test_real_error_envelopes(name: str, http_status: int, kind: OutcomeKind, code: int) -> None:
    outcome = classify_response(http_status, sample(name), attempt=1)
    assert (outcome.kind, outcome.error_code, outcome.http_status) == (kind, code, http_status)


def test_130429_keeps_title_details_and_trace_id() -> None:
    outcome = classify_response(429, sample("error_130429_rate_limit_metadocs.json"), attempt=1)
    assert outcome.error_title == "Rate limit hit"
    assert outcome.error_details == "Cloud API message throughput has been reached."
    assert outcome.fbtrace_id == "Az8or2yhqkZfEZ-_4Qn_Bam"


def test_190_names_the_token_problem_for_the_operator() -> None:
    outcome = classify_response(401, sample("error_190_invalid_token_openapi.json"), attempt=1)
    assert outcome.fatal_reason == "access token rejected (190): Invalid OAuth access token"
    assert outcome.resume_after_s is None


@pytest.mark.parametrize(
    ("name", "kind", "title"),
    [
        ("error_131047_webhook_error_object_pywa.json", K.PERMANENT, "Re-engagement message"),
        ("error_131053_webhook_error_object_pywa.json", K.FATAL, "Media upload error"),
    ],
)
def test_webhook_error_objects_classify_with_the_same_table(
    name: str, kind: OutcomeKind, title: str
) -> None:
    outcome = classify_error_object(json.loads(sample(name)), attempt=1)
    assert (outcome.kind, outcome.error_title, outcome.http_status) == (kind, title, None)
    assert outcome.error_details


def test_131050_is_permanent_and_suppresses_recipient() -> None:
    outcome = classify_response(400, error_body(131050), attempt=1)
    assert outcome.kind is K.PERMANENT
    assert outcome.suppress_recipient


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES - {131050}))
def test_other_permanent_codes_do_not_suppress(code: int) -> None:
    assert not classify_response(400, error_body(code), attempt=1).suppress_recipient


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1), (2, 4), (3, 16), (4, 64), (6, 1024)])
def test_131056_pair_limit_retries_after_4_to_the_x_seconds(attempt: int, delay: float) -> None:
    outcome = classify_response(400, error_body(131056), attempt=attempt)
    assert outcome.kind is K.RETRY_LATER
    assert outcome.retry_after_s == delay


@pytest.mark.parametrize("attempt", [7, 8, 50, 10_000])
def test_131056_pair_limit_wait_is_capped_at_an_hour(attempt: int) -> None:
    assert pair_limit_retry_after_s(attempt) == 3600


@pytest.mark.parametrize("attempt", [1, 5])
def test_131049_retries_after_at_least_24_hours(attempt: int) -> None:
    outcome = classify_response(400, error_body(131049), attempt=attempt)
    assert outcome.kind is K.RETRY_LATER
    assert outcome.retry_after_s is not None
    assert outcome.retry_after_s >= 24 * 3600


@pytest.mark.parametrize(("code", "resume_after_s"), [(131057, 60), (2494100, 300)])
def test_maintenance_is_fatal_but_resumes_by_itself(code: int, resume_after_s: float) -> None:
    outcome = classify_response(400, error_body(code, "Account in maintenance mode"), attempt=1)
    assert outcome.kind is K.FATAL
    assert outcome.resume_after_s == resume_after_s
    assert outcome.fatal_reason == (
        f"business account in maintenance mode ({code}): Account in maintenance mode"
    )


def test_paused_template_resumes_after_three_hours() -> None:
    outcome = classify_response(400, error_body(132015), attempt=1)
    assert outcome.kind is K.FATAL
    assert outcome.resume_after_s == 3 * 3600


@pytest.mark.parametrize(("code", "_kind"), [c for c in CODE_TABLE if c[1] is K.FATAL])
def test_every_fatal_code_has_an_operator_reason(code: int, _kind: OutcomeKind) -> None:
    outcome = classify_response(400, error_body(code, "Some title"), attempt=1)
    assert outcome.fatal_reason is not None
    assert outcome.fatal_reason.endswith(f"({code}): Some title")


@pytest.mark.parametrize(("code", "_kind"), [c for c in CODE_TABLE if c[1] is not K.FATAL])
def test_only_fatal_outcomes_carry_a_fatal_reason(code: int, _kind: OutcomeKind) -> None:
    outcome = classify_response(400, error_body(code), attempt=1)
    assert outcome.fatal_reason is None
    assert outcome.resume_after_s is None


@pytest.mark.parametrize(
    ("http_status", "body", "kind"),
    [
        (500, None, K.TRANSIENT),
        (502, b"<html>Bad Gateway</html>", K.TRANSIENT),
        (503, b"", K.TRANSIENT),
        (504, {"error": {"message": "no code"}}, K.TRANSIENT),
        (408, None, K.TRANSIENT),
        (429, None, K.THROTTLED),
        (429, b"Too Many Requests", K.THROTTLED),
        (401, b"Unauthorized", K.FATAL),
        (403, None, K.FATAL),
        (404, None, K.FATAL),
        (400, None, K.PERMANENT),
        (400, b"not json", K.PERMANENT),
        (413, None, K.PERMANENT),
    ],
)
def test_http_status_is_the_fallback_without_an_error_code(
    http_status: int, body: Any, kind: OutcomeKind
) -> None:
    outcome = classify_response(http_status, body, attempt=1)
    assert outcome.kind is kind
    assert outcome.error_code is None
    assert outcome.error_title in (f"HTTP {http_status}", "no code")


@pytest.mark.parametrize(
    ("http_status", "kind"), [(400, K.PERMANENT), (500, K.TRANSIENT), (429, K.THROTTLED)]
)
def test_unknown_code_falls_back_to_the_http_status(http_status: int, kind: OutcomeKind) -> None:
    assert classify_response(http_status, error_body(999_999), attempt=1).kind is kind


def test_unknown_code_marked_is_transient_by_meta_is_transient() -> None:
    body = {"error": {"message": "x", "code": 999_999, "is_transient": True}}
    assert classify_response(400, body, attempt=1).kind is K.TRANSIENT


def test_unknown_code_with_401_is_fatal_and_says_so() -> None:
    outcome = classify_response(401, error_body(999_999, "Nope"), attempt=1)
    assert outcome.kind is K.FATAL
    assert outcome.fatal_reason == "HTTP 401 with unknown error code 999999: Nope"


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"<html>ok</html>",
        b"\xff\xfe",
        b"[1, 2]",
        {"messages": []},
        {"messages": [{"id": ""}]},
        {"messages": [{"id": 42}]},
        {"messages": "wamid.X"},
        {"messaging_product": "whatsapp"},
    ],
)
def test_unreadable_2xx_is_an_unknown_outcome_never_a_plain_retry(body: Any) -> None:
    """The request reached the API: it may have accepted the message (issue 21: these were
    resent until the attempts ran out, even under recovery.unknown_outcome = error)."""
    outcome = classify_response(200, body, attempt=1)
    assert outcome.kind is K.UNKNOWN
    assert outcome.wamid is None
    assert outcome.error_title is not None
    assert outcome.error_title.startswith("outcome unknown: HTTP 200 ")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "with an empty body"),
        (b"<html>OK</html>", "with a body that is not a JSON object"),
        ({"messaging_product": "whatsapp"}, "without a usable messages[].id"),
        ({"messages": [{"id": "wamid.\x00X"}]}, "without a usable messages[].id"),
        ({"messages": [{"id": "wamid.A\nB"}]}, "without a usable messages[].id"),
        ({"messages": [{"id": "w" * 257}]}, "without a usable messages[].id"),
        (None, "body over the size bound"),
    ],
)
def test_an_unknown_2xx_says_why(body: Any, why: str) -> None:
    outcome = classify_response(200, body, attempt=1)
    assert (outcome.kind, outcome.error_title) == (K.UNKNOWN, f"outcome unknown: HTTP 200 {why}")


def test_204_is_an_unknown_outcome() -> None:
    assert classify_response(204, b"", attempt=1).kind is K.UNKNOWN


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_bounded_failure_never_followed(status: int) -> None:
    outcome = classify_response(status, b"", attempt=1)
    assert outcome.kind is K.TRANSIENT
    assert outcome.error_title == f"HTTP {status} redirect, not followed"


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), (" 30 ", 30.0), ("0", 0.0), ("99999", 3600.0)]
)
def test_retry_after_on_429_is_kept_capped_at_an_hour(header: str, expected: float) -> None:
    outcome = classify_response(
        429, b"Too Many Requests", attempt=1, retry_after_s=parse_retry_after(header)
    )
    assert (outcome.kind, outcome.retry_after_s) == (K.THROTTLED, expected)


@pytest.mark.parametrize("header", [None, "", "soon", "Wed, 21 Oct 2026 07:28:00 GMT", "-1", "1.5"])
def test_a_retry_after_that_is_not_seconds_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header) is None


def test_retry_after_is_ignored_on_other_errors() -> None:
    assert classify_response(500, b"", attempt=1, retry_after_s=9.0).retry_after_s is None


def test_a_nul_in_wa_id_or_message_status_is_not_kept() -> None:
    body = {
        "contacts": [{"wa_id": "1555\x00"}],
        "messages": [{"id": "wamid.OK", "message_status": "acc\x00epted"}],
    }
    outcome = classify_response(200, body, attempt=1)
    assert (outcome.kind, outcome.wamid) == (K.ACCEPTED, "wamid.OK")
    assert outcome.wa_id is None and outcome.message_status == "accepted"


def test_error_envelope_inside_a_2xx_is_classified_by_its_code() -> None:
    assert classify_response(200, error_body(131026), attempt=1).kind is K.PERMANENT


@pytest.mark.parametrize("code", ["131026", 131026])
def test_code_given_as_a_string_is_understood(code: object) -> None:
    body = {"error": {"message": "x", "code": code}}
    assert classify_response(400, body, attempt=1).error_code == 131026


@pytest.mark.parametrize("code", [True, None, "13x", 1.5, [1]])
def test_nonsense_code_falls_back_to_the_http_status(code: object) -> None:
    outcome = classify_response(503, {"error": {"code": code}}, attempt=1)
    assert (outcome.kind, outcome.error_code) == (K.TRANSIENT, None)


@pytest.mark.parametrize("kind", ["ClientConnectorError", "ConnectionTimeoutError"])
def test_transport_errors_before_the_request_went_out_are_transient(kind: str) -> None:
    outcome = classify_transport_error(kind)
    assert outcome.kind is K.TRANSIENT
    assert outcome.error_title == f"transport error: {kind}"
    assert outcome.http_status is None


@pytest.mark.parametrize("kind", ["timeout", "server disconnected", "truncated response body"])
def test_transport_errors_after_the_request_went_out_are_unknown(kind: str) -> None:
    outcome = classify_transport_error(kind, sent=True)
    assert (outcome.kind, outcome.error_title) == (K.UNKNOWN, f"outcome unknown: {kind}")


def test_a_mapping_that_is_not_a_dict_reads_like_one() -> None:
    """The fast path checks for dicts first; any other Mapping takes the general one."""
    body = MappingProxyType(
        {
            "contacts": [MappingProxyType({"input": "1", "wa_id": "1"})],
            "messages": [MappingProxyType({"id": "wamid.X"})],
        }
    )
    outcome = classify_response(200, body, attempt=1)
    assert (outcome.kind, outcome.wamid, outcome.wa_id) == (K.ACCEPTED, "wamid.X", "1")
    error = MappingProxyType({"error": MappingProxyType({"code": 131026, "message": "x"})})
    assert classify_response(200, error, attempt=1).kind is K.PERMANENT


FAST_PATH_BODIES: list[Any] = [
    {"messages": [{"id": "wamid.X"}]},
    {"messages": [{"id": "wamid.X", "message_status": ""}]},
    {"messages": [{"id": "wamid.X", "message_status": 5}]},
    {"messages": [{"id": "wamid.X"}, {"id": "wamid.Y"}]},
    {"contacts": [{"wa_id": "  "}], "messages": [{"id": "wamid.X"}]},
    {"contacts": [{"wa_id": ""}], "messages": [{"id": "wamid.X"}]},
    {"contacts": [{"wa_id": 5}], "messages": [{"id": "wamid.X"}]},
    {"contacts": [], "messages": [{"id": "wamid.X"}]},
    {"contacts": ["1"], "messages": [{"id": "wamid.X"}]},
    {"contacts": {"wa_id": "1"}, "messages": [{"id": "wamid.X"}]},
    {"error": None, "messages": [{"id": "wamid.X"}]},
    {"error": "x", "messages": [{"id": "wamid.X"}]},
    {"error": {"code": 131026}, "messages": [{"id": "wamid.X"}]},
    {"code": 131026, "messages": [{"id": "wamid.X"}]},
    {"messages": [["wamid.X"]]},
    {"messages": [{"id": None}]},
    [{"messages": [{"id": "wamid.X"}]}],
]


@pytest.mark.parametrize("http_status", [200, 201, 299])
@pytest.mark.parametrize(
    "body",
    FAST_PATH_BODIES + [json.loads(sample(p.name)) for p in sorted(DATA.glob("*.json"))],
)
def test_a_raw_response_reads_exactly_like_its_parsed_document(http_status: int, body: Any) -> None:
    """Raw 2xx bytes take a one-function fast path; the parsed document the general one."""
    raw = json.dumps(body).encode()
    assert classify_response(http_status, raw, attempt=2) == classify_response(
        http_status, body if isinstance(body, dict) else raw, attempt=2
    )
