"""Cloud API error catalogue of the mock: titles, details and HTTP statuses per error code.

Envelopes follow the Graph API shape (``{"error": {message, type, code, error_data,
fbtrace_id}}``); webhook error objects follow ``statuses[].errors[]``. HTTP statuses follow the
older per-code table mirrored by BSPs: most codes 400, 130429 429, 131000 500, 2/131016/133004
503, 190 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_CODES_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One Cloud API error code: its title, details, HTTP status and envelope fields."""

    code: int
    title: str
    details: str
    http_status: int = 400
    type: str = "OAuthException"
    is_transient: bool = False
    error_subcode: int | None = None
    # Graph-level auth errors carry a plain message and no WhatsApp error_data.
    graph_message: str | None = None


def _spec(code: int, title: str, details: str, http_status: int = 400, **kw: Any) -> ErrorSpec:
    return ErrorSpec(code, title, details, http_status, **kw)


_CATALOGUE = (
    _spec(
        0,
        "AuthException",
        "We were unable to authenticate the app user.",
        401,
        graph_message="(#0) AuthException",
    ),
    _spec(1, "API Unknown", "Invalid request or possible server error.", 500, is_transient=True),
    _spec(
        2,
        "API Service",
        "Temporary due to downtime or due to being overloaded.",
        503,
        type="GraphMethodException",
        is_transient=True,
    ),
    _spec(3, "API Method", "Capability or permissions issue."),
    _spec(
        4,
        "API Too Many Calls",
        "The app has reached its API call rate limit.",
        429,
        is_transient=True,
    ),
    _spec(10, "Permission Denied", "Permission is either not granted or has been removed."),
    _spec(33, "Parameter value is not valid", "This business phone number has been deleted."),
    _spec(100, "Invalid parameter", "The request included one or more invalid parameters."),
    _spec(
        190,
        "Access token has expired",
        "Error validating access token: Session has expired.",
        401,
        error_subcode=463,
        graph_message="Error validating access token: Session has expired.",
    ),
    _spec(200, "Permission Denied", "Permission is either not granted or has been removed."),
    _spec(368, "Temporarily blocked for policies violations", "The account is restricted."),
    _spec(
        80007,
        "Rate limit issues",
        "The WhatsApp Business Account has reached its rate limit.",
        429,
    ),
    _spec(
        130403,
        "Recipient blocked",
        "Message failed to send because the business has blocked this user.",
    ),
    _spec(
        130429,
        "Rate limit hit",
        "Cloud API message throughput has been reached.",
        429,
        error_subcode=2494055,
    ),
    _spec(
        130472,
        "User's number is part of an experiment",
        "Failed to send message because this user's phone number is part of an experiment",
    ),
    _spec(
        130497,
        "Business account is restricted from messaging users in this country",
        "The business is restricted from messaging users in this country.",
    ),
    _spec(131000, "Something went wrong", "Message failed to send due to an unknown error.", 500),
    _spec(131005, "Access denied", "Permission is either not granted or has been removed."),
    _spec(131008, "Required parameter is missing", "The request is missing a required parameter."),
    _spec(131009, "Parameter value is not valid", "One or more parameter values are invalid."),
    _spec(
        131016,
        "Service unavailable",
        "A service is temporarily unavailable. Please try again later.",
        503,
    ),
    _spec(131021, "Recipient cannot be sender", "Sender and recipient phone number is the same."),
    _spec(
        131026,
        "Message undeliverable",
        "Unable to deliver message. Reasons can include: the recipient phone number is not a"
        " WhatsApp phone number; the recipient has not accepted the new Terms of Service and"
        " Privacy Policy; the recipient is using an old WhatsApp version.",
    ),
    _spec(
        131030,
        "Recipient phone number not in allowed list",
        "Recipient phone number not in allowed list: add it to the list of allowed numbers.",
    ),
    _spec(131031, "Account has been locked", "The business account was locked."),
    _spec(
        131042,
        "Business eligibility payment issue",
        "Message failed to send because there were one or more errors related to your payment"
        " method.",
    ),
    _spec(
        131045,
        "Incorrect certificate",
        "Message failed to send due to a phone number registration error.",
    ),
    _spec(
        131047,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last"
        " replied to this number.",
    ),
    _spec(
        131048,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent"
        " from this phone number.",
    ),
    _spec(
        131049,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    _spec(
        131050,
        "User stopped marketing messages",
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing"
        " messages on WhatsApp from your business.",
    ),
    _spec(131051, "Unsupported message type", "Unsupported message type."),
    _spec(131053, "Media upload error", "Unable to upload the media used in the message."),
    _spec(131055, "Method not allowed", "Method not allowed."),
    _spec(
        131056,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone"
        " number to the same phone number in a short period of time.",
    ),
    _spec(
        131057,
        "Account in maintenance mode",
        "Business Account is in maintenance mode.",
    ),
    _spec(
        132000,
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    _spec(
        132001,
        "Template name does not exist in the translation",
        "template name does not exist in the translation",
    ),
    _spec(132005, "Translated text too long", "Translated text is too long."),
    _spec(
        132007,
        "Template Format Character Policy Violated",
        "Template content violates a WhatsApp policy.",
    ),
    _spec(
        132012,
        "Parameter format does not match format in the created template",
        "Variable parameter values formatted incorrectly.",
    ),
    _spec(132015, "Template is Paused", "Template is paused due to low quality."),
    _spec(132016, "Template is Disabled", "Template has been paused too many times."),
    _spec(
        132018,
        "Template parameter issue",
        "There was an issue with the parameters in your template.",
    ),
    _spec(
        131058,
        "Hello World templates can only be sent from the Public Test Numbers",
        "Hello World templates can only be sent from the Public Test Numbers.",
    ),
    _spec(133004, "Server temporarily unavailable", "Server is temporarily unavailable.", 503),
    _spec(133010, "Phone number not registered", "Phone number not registered on the platform."),
    _spec(135000, "Generic user error", "Message failed to send because of an unknown error."),
)

CATALOGUE: dict[int, ErrorSpec] = {spec.code: spec for spec in _CATALOGUE}


def error_spec(code: int) -> ErrorSpec:
    """The catalogue entry for ``code``; unknown codes get a generic 400 entry."""
    spec = CATALOGUE.get(code)
    if spec is None:
        return ErrorSpec(code, "Error", f"Error {code}.")
    return spec


def error_envelope(code: int, fbtrace_id: str, details: str | None = None) -> dict[str, Any]:
    """The synchronous error body Graph returns for ``code``."""
    spec = error_spec(code)
    error: dict[str, Any] = {
        "message": spec.graph_message or f"(#{code}) {spec.title}",
        "type": spec.type,
        "code": code,
    }
    if spec.graph_message is None:
        error["error_data"] = {
            "messaging_product": "whatsapp",
            "details": details or spec.details,
        }
    if spec.error_subcode is not None:
        error["error_subcode"] = spec.error_subcode
    if spec.is_transient:
        error["is_transient"] = True
    error["fbtrace_id"] = fbtrace_id
    return {"error": error}


def unknown_object_envelope(object_id: str, method: str, fbtrace_id: str) -> dict[str, Any]:
    """What Graph answers (HTTP 400) to a URL naming an object that does not exist or that the
    token cannot use: an unknown phone_number_id or WABA id (code 100, subcode 33)."""
    return {
        "error": {
            "message": f"Unsupported {method} request. Object with ID '{object_id}' does not"
            " exist, cannot be loaded due to missing permissions, or does not support this"
            " operation. Please read the Graph API documentation at"
            " https://developers.facebook.com/docs/graph-api",
            "type": "GraphMethodException",
            "code": 100,
            "error_subcode": 33,
            "fbtrace_id": fbtrace_id,
        }
    }


def invalid_token_envelope(fbtrace_id: str) -> dict[str, Any]:
    """What Graph answers to a missing or unparsable access token (HTTP 401)."""
    return {
        "error": {
            "message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException",
            "code": 190,
            "fbtrace_id": fbtrace_id,
        }
    }


def webhook_error(code: int) -> dict[str, Any]:
    """The ``statuses[].errors[]`` object for an asynchronous failure."""
    spec = error_spec(code)
    return {
        "code": code,
        "title": spec.title,
        "message": spec.title,
        "error_data": {"details": spec.details},
        "href": ERROR_CODES_HREF,
    }
