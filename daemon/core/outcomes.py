"""Classify the result of one send attempt: accepted, retry, refused for the recipient, or fatal.

Meta asks integrators to branch on the error `code`, not on the HTTP status nor the title, so
the code tables below decide; the HTTP status is only a fallback for bodies without a known
code. The same tables classify the `errors[]` objects of `failed` status webhooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeGuard

import orjson


class OutcomeKind(StrEnum):
    """The class of one send attempt's answer, which decides what happens to the contact (and the
    campaign)."""

    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # retry this contact with backoff
    THROTTLED = "throttled"  # transient, and the sender must slow down
    RETRY_LATER = "retry_later"  # retry this contact only, after `retry_after_s`
    PERMANENT = "permanent"  # refused for this recipient for good
    FATAL = "fatal"  # every contact would fail the same way: hold the campaign
    # The request reached the API and its answer does not say whether the message was
    # accepted (an empty or unreadable 2xx, a 2xx without messages[].id, a reset or a timeout
    # after the request went out, a truncated body): recovery.unknown_outcome decides.
    UNKNOWN = "unknown"


TRANSIENT_CODES: Final = frozenset({1, 2, 131000, 131016, 133004})
"""Meta-side errors, downtime and overload. 1 is ambiguous (notes: "T, few tries"); the retry
policy bounds it and exhausted attempts end in `error`."""

THROTTLED_CODES: Final = frozenset({4, 80007, 130429})
"""App (4), WABA (80007) and per-number throughput (130429) rate limits."""

RETRY_LATER_CODES: Final = frozenset({131056, 131049})
"""131056: pair rate limit, this user only, retry after 4^X s. 131049: per-user marketing cap,
retrying within 24 h just fails again."""

PERMANENT_CODES: Final = frozenset(
    {
        131026,
        131050,
        130472,
        130497,
        130403,
        131021,
        131047,
        131009,
        131008,
        100,
        135000,
        132000,
        132012,
        132018,
    }
)
"""Refused for this recipient: not on WhatsApp (131026), opted out of marketing (131050),
Meta experiment (130472), country blocked for the WABA (130497), user blocked by the business
(130403), sender is recipient (131021), re-engagement (131047, not expected for templates).
Parameter errors 131009/131008/100/135000 and the template parameter errors 132000 (count),
132012 (format) and 132018 (a value with a newline, tab or 5 spaces) may be one contact's
data (its values, its language) or a payload bug; per contact here, so one bad row does not
stop a campaign; the engine's breaker (`core.breaker`) pauses the campaign after a run of
identical ones, which catches the payload-bug case."""

REQUEST_SHAPED_CODES: Final = frozenset({100, 131008, 131009, 132000, 132012, 132018, 135000})
"""Per-contact refusals about the request, not the person: what the breaker counts."""

FATAL_SUBCODES: Final[Mapping[tuple[int, int], str]] = {
    (100, 33): "unknown phone_number_id: the sending number does not exist or the token"
    " cannot use it",
}
"""(code, error_subcode) pairs that hold the campaign although the code alone would not: Graph's
"Unsupported post request. Object with ID ... does not exist" (100 / 33) means the URL's
phone_number_id is wrong, so every contact of the campaign would fail the same way."""

SUPPRESS_CODES: Final = frozenset({131050})
"""The recipient opted out: also add the phone to the suppression list."""

PERMISSION_CODES: Final = frozenset({3, 10, *range(200, 300), 131005})

FATAL_REASONS: Final[Mapping[int, str]] = {
    0: "access token rejected",
    190: "access token rejected",
    **dict.fromkeys(PERMISSION_CODES, "permission missing for the access token"),
    33: "business phone number deleted",
    131045: "business phone number not registered",
    133010: "business phone number not registered",
    131037: "business phone number has no approved display name",
    368: "business account restricted for policy violations",
    131031: "business account locked",
    131042: "business payment method problem",
    131048: "phone number restricted by the spam rate limit",
    131064: "account messaging limited for template classification violations",
    131030: "recipient not in the allowed list: is this still a test phone number?",
    131051: "unsupported message type (request payload bug)",
    131053: "template header media could not be fetched",
    131057: "business account in maintenance mode",
    2494100: "business account in maintenance mode",
    131063: "marketing templates disabled for this business account",
    131055: "method not allowed: not a marketing template, on the Marketing Messages API",
    131058: "hello_world can only be sent from Meta's public test numbers",
    132001: "template does not exist in this language or is not approved",
    132005: "template translated text too long",
    132007: "template content violates policy",
    132015: "template paused for low quality",
    132016: "template disabled",
}
"""Hold the campaign: token, permissions, phone number, account, billing, template problems.
131030 only happens on test numbers: in production it means the configuration is wrong."""

TEMPLATE_CODES: Final = frozenset({132001, 132015, 132016})
"""Template missing / paused / disabled: a pause by Meta, undone when Meta's webhook says the
template is APPROVED again (engine/listening.py)."""

RESUME_AFTER_S: Final[Mapping[int, float]] = {
    131057: 60.0,  # throughput upgrade: Meta documents up to a minute of maintenance
    2494100: 5 * 60.0,
    132015: 3
    * 3600.0,  # a template paused for quality is re-enabled after 3 h (6 h the second time)
}
"""Fatal codes that clear by themselves: the engine may resume the campaign after this delay
instead of waiting for an operator (a still-failing first attempt simply holds it again)."""

CODE_KINDS: Final[Mapping[int, OutcomeKind]] = {
    **dict.fromkeys(TRANSIENT_CODES, OutcomeKind.TRANSIENT),
    **dict.fromkeys(THROTTLED_CODES, OutcomeKind.THROTTLED),
    **dict.fromkeys(RETRY_LATER_CODES, OutcomeKind.RETRY_LATER),
    **dict.fromkeys(PERMANENT_CODES, OutcomeKind.PERMANENT),
    **dict.fromkeys(FATAL_REASONS, OutcomeKind.FATAL),
}

ECOSYSTEM_RETRY_AFTER_S: Final = 24 * 3600.0
PAIR_LIMIT_MAX_RETRY_AFTER_S: Final = 3600.0

# Without a known code: an authentication or routing refusal hits every contact alike.
_FATAL_HTTP_STATUSES: Final = frozenset({401, 403, 404})
_HTTP_TIMEOUT_STATUSES: Final = frozenset({408})
_HTTP_THROTTLE_STATUSES: Final = frozenset({429})

MAX_WAMID_CHARS: Final = 256
"""A message id longer than this (Meta's are ~60 characters), or holding a control character,
is not a message id: the answer is an unknown outcome, not an acceptance."""

MAX_RETRY_AFTER_S: Final = 3600.0
"""A `Retry-After` above this is taken as this (an hour): a confused proxy must not park the
sender for a day."""


# Not frozen: a frozen dataclass sets each of its 13 fields through object.__setattr__, and one
# Outcome is made per send (2.1 vs 0.3 us here). Treat it as immutable all the same.
@dataclass(slots=True)
class Outcome:
    """One send attempt's answer, classified: the wamid when accepted, else the error and what it
    means."""

    kind: OutcomeKind
    wamid: str | None = None
    wa_id: str | None = None
    message_status: str | None = None
    http_status: int | None = None
    error_code: int | None = None
    error_title: str | None = None
    error_details: str | None = None
    fbtrace_id: str | None = None
    suppress_recipient: bool = False
    retry_after_s: float | None = None
    fatal_reason: str | None = None
    resume_after_s: float | None = None  # FATAL that clears by itself: hold, then resume


def classify_response(
    http_status: int,
    body: bytes | Mapping[str, Any] | None,
    *,
    attempt: int,
    retry_after_s: float | None = None,
) -> Outcome:
    """Classify an HTTP response to a send; `attempt` is the 1-based number of this attempt,
    `retry_after_s` the answer's `Retry-After` header (seconds) if it had one.

    A 2xx whose body is not a send response (none, not JSON, no `messages[0].id`, an unusable
    id) is UNKNOWN: the request reached the API and nothing says whether the message went; its
    callback data still lets a status receipt resolve it. A 3xx is never followed (a redirect
    to another origin would hand it the token and the message): the API did not take the
    message, so it is TRANSIENT, bounded by max_attempts like any other failure (contact
    `error` when they run out). `body` None: not read (over the size bound).
    """
    document = _as_mapping(body)
    error = _error_object(document) if document is not None else None
    if 200 <= http_status < 300 and error is None:
        accepted = _accepted(document, http_status)
        if accepted is not None:
            return accepted
        return Outcome(
            OutcomeKind.UNKNOWN,
            http_status=http_status,
            error_title=f"outcome unknown: HTTP {http_status} {_unreadable(body, document)}",
        )
    if 300 <= http_status < 400 and error is None:
        return Outcome(
            OutcomeKind.TRANSIENT,
            http_status=http_status,
            error_title=f"HTTP {http_status} redirect, not followed",
        )
    outcome = classify_error_object(error or {}, attempt=attempt, http_status=http_status)
    if retry_after_s is not None and outcome.kind is OutcomeKind.THROTTLED:
        outcome.retry_after_s = min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
    return outcome


def parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` header's delay in seconds (delta-seconds only; an HTTP date or junk
    reads as None: the adaptive slow-down still applies)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        return None
    return float(value)


def _unreadable(body: bytes | Mapping[str, Any] | None, document: Mapping[str, Any] | None) -> str:
    if body is None:
        return "body over the size bound"
    if document is None:
        return "with an empty body" if body == b"" else "with a body that is not a JSON object"
    return "without a usable messages[].id"


def classify_error_object(
    error: Mapping[str, Any], *, attempt: int, http_status: int | None = None
) -> Outcome:
    """Classify a Graph error object (`{"error": {...}}`'s inside) or a webhook `errors[]` item."""
    code = _int_or_none(error.get("code"))
    title = _title(error, code)
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    subcode_reason = (
        FATAL_SUBCODES.get((code, _int_or_none(error.get("error_subcode")) or 0))
        if code is not None
        else None
    )
    if subcode_reason is not None:
        return Outcome(
            OutcomeKind.FATAL,
            http_status=http_status,
            error_code=code,
            error_title=title,
            error_details=details if isinstance(details, str) else None,
            fbtrace_id=_str_or_none(error.get("fbtrace_id")),
            fatal_reason=f"{subcode_reason} ({code}/{error.get('error_subcode')})",
        )
    kind = _kind(code, error.get("is_transient") is True, http_status)
    return Outcome(
        kind,
        http_status=http_status,
        error_code=code,
        error_title=title or (f"HTTP {http_status}" if http_status is not None else None),
        error_details=details if isinstance(details, str) else None,
        fbtrace_id=_str_or_none(error.get("fbtrace_id")),
        suppress_recipient=code in SUPPRESS_CODES,
        retry_after_s=_retry_after_s(code, attempt) if kind is OutcomeKind.RETRY_LATER else None,
        fatal_reason=_fatal_reason(code, title, http_status) if kind is OutcomeKind.FATAL else None,
        resume_after_s=RESUME_AFTER_S.get(code) if code is not None else None,
    )


def classify_transport_error(kind: str, *, sent: bool = False) -> Outcome:
    """A request that got no usable HTTP response ("timeout", "connection", ...). Not `sent`
    (the connection failed before the request went out): TRANSIENT, retried with backoff.
    `sent` (a reset, a timeout or a truncated answer after the request went out): UNKNOWN,
    the API may have accepted the message."""
    if sent:
        return Outcome(OutcomeKind.UNKNOWN, error_title=f"outcome unknown: {kind}")
    return Outcome(OutcomeKind.TRANSIENT, error_title=f"transport error: {kind}")


def pair_limit_retry_after_s(attempt: int) -> float:
    """Meta's 131056 schedule, 4^X seconds for X = 0, 1, 2..., capped at an hour."""
    exponent = max(attempt - 1, 0)
    if exponent > 6:  # 4^6 already exceeds the cap
        return PAIR_LIMIT_MAX_RETRY_AFTER_S
    return min(4.0**exponent, PAIR_LIMIT_MAX_RETRY_AFTER_S)


def _kind(code: int | None, is_transient: bool, http_status: int | None) -> OutcomeKind:
    if code is not None and code in CODE_KINDS:
        return CODE_KINDS[code]
    if is_transient:
        return OutcomeKind.TRANSIENT
    if http_status is None:  # a webhook error with an unknown code: the message did not go
        return OutcomeKind.PERMANENT
    if http_status >= 500 or http_status in _HTTP_TIMEOUT_STATUSES:
        return OutcomeKind.TRANSIENT
    if http_status in _HTTP_THROTTLE_STATUSES:
        return OutcomeKind.THROTTLED
    if http_status in _FATAL_HTTP_STATUSES:
        return OutcomeKind.FATAL
    if 400 <= http_status < 500:
        return OutcomeKind.PERMANENT
    return OutcomeKind.TRANSIENT


def _retry_after_s(code: int | None, attempt: int) -> float:
    if code == 131049:
        return ECOSYSTEM_RETRY_AFTER_S
    return pair_limit_retry_after_s(attempt)


def _fatal_reason(code: int | None, title: str | None, http_status: int | None) -> str:
    if code is not None and code in FATAL_REASONS:
        reason = f"{FATAL_REASONS[code]} ({code})"
    elif code is not None:
        reason = f"HTTP {http_status} with unknown error code {code}"
    else:
        reason = f"HTTP {http_status} without a known error code"
    return f"{reason}: {title}" if title else reason


def _accepted(document: Mapping[str, Any] | None, http_status: int) -> Outcome | None:
    # Once per send: type checks inline and a positional Outcome, no helper calls (they were
    # ~40 % of reading a response).
    if document is None:
        return None
    messages = document.get("messages")
    if type(messages) is not list or not messages:
        return None
    message = messages[0]
    if type(message) is not dict and not isinstance(message, Mapping):
        return None
    wamid = message.get("id")
    if not isinstance(wamid, str) or not wamid:
        return None
    if len(wamid) > MAX_WAMID_CHARS or not wamid.isprintable():  # a NUL, a newline, ...
        return None
    wa_id = None
    contacts = document.get("contacts")
    if type(contacts) is list and contacts:
        contact = contacts[0]
        if type(contact) is dict or isinstance(contact, Mapping):
            value = contact.get("wa_id")
            if isinstance(value, str) and value and value.isprintable():
                wa_id = value.strip()
    status = message.get("message_status")
    return Outcome(
        OutcomeKind.ACCEPTED,
        wamid,
        wa_id,
        status if isinstance(status, str) and status and status.isprintable() else "accepted",
        http_status,
    )


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # dict first: JSON gives dicts, and isinstance against the Mapping ABC costs a call.
    return type(value) is dict or isinstance(value, Mapping)


def _as_mapping(body: bytes | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if body is None or (type(body) is not bytes and isinstance(body, Mapping)):
        return body
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:  # invalid UTF-8 included
        return None
    # `_is_mapping`, inline: once per send.
    return document if type(document) is dict or isinstance(document, Mapping) else None


def _error_object(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    error = document.get("error")
    if error is not None and _is_mapping(error):
        return error
    return document if "code" in document else None


def _title(error: Mapping[str, Any], code: int | None) -> str | None:
    """Webhook errors carry a `title`; sync errors a message "(#130429) Rate limit hit"."""
    title = _str_or_none(error.get("title")) or _str_or_none(error.get("message"))
    if title and code is not None:
        prefix = f"(#{code}) "
        if title.startswith(prefix):
            title = title[len(prefix) :]
    return title or None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
