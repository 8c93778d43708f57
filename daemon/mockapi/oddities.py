"""Odd but possible answers of the mock: the ones that leave a sender guessing (a 200 with no
usable body, a reset or an answer after the request went out, a truncated body), poisonous
ones (a wamid another message got, an error code beyond 32 or 64 bits, a NUL byte), and the
ones a proxy or a confused server gives (an HTML 502, a redirect, 429 with Retry-After).

Triggered per recipient (`FaultConfig.odd_answers`, `to` -> kind), on the first request to
that recipient only: a resend (under recovery.unknown_outcome = retry) gets a normal answer.
Served by aiohttp (the fast lane is off while odd answers are configured).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from aiohttp import web

from daemon.mockapi.state import AcceptedMessage, MockState

OddKind = Literal[
    "empty_200",
    "non_json_200",
    "no_id_200",
    "no_content_204",
    "reset_after_send",
    "late_answer",
    "truncated_body",
    "huge_body",
    "html_502",
    "redirect_307",
    "retry_after_429",
    "duplicate_wamid",
    "nul_wamid",
    "code_over_int32",
    "code_over_int64",
    "nul_title",
]

ACCEPTED_KINDS: Final[frozenset[str]] = frozenset(
    {
        "empty_200",
        "non_json_200",
        "no_id_200",
        "no_content_204",
        "reset_after_send",
        "late_answer",
        "truncated_body",
        "huge_body",
        "duplicate_wamid",
        "nul_wamid",
    }
)
"""Kinds after which the message has gone out (its receipts follow), whatever the answer says."""

UNKNOWN_KINDS: Final[frozenset[str]] = ACCEPTED_KINDS - {"duplicate_wamid"}
"""Accepted kinds whose answer leaves the sender unable to tell (a duplicate wamid looks like
an acceptance; the recorder refuses it)."""

ODD_KINDS: Final[tuple[str, ...]] = OddKind.__args__  # type: ignore[attr-defined]
HUGE_BODY_BYTES: Final = 50 * 1024 * 1024
RETRY_AFTER_S: Final = 2


@dataclass(frozen=True, slots=True)
class OddAnswer:
    """One odd answer to serve, with the message the mock accepted (None: not accepted)."""

    kind: str
    to: str
    message: AcceptedMessage | None
    previous_wamid: str | None  # the last wamid given before (for duplicate_wamid)
    hang_s: float

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """Answer `request` this way."""
        kind, message = self.kind, self.message
        if kind == "empty_200":
            return web.Response(status=200, body=b"")
        if kind == "non_json_200":
            return web.Response(
                status=200, text="<html><body>OK</body></html>", content_type="text/html"
            )
        if kind == "no_id_200":
            return _json({"messaging_product": "whatsapp", "contacts": [{"input": self.to}]})
        if kind == "no_content_204":
            return web.Response(status=204)
        if kind == "reset_after_send":
            request.protocol.force_close()
            return web.Response(status=500)  # never written: the socket is closed
        if kind == "late_answer":
            await asyncio.sleep(self.hang_s)  # past the client's timeout
            return _json(_accepted_body(self.to, message.wamid if message else "wamid.late"))
        if kind == "truncated_body":
            body = orjson.dumps(_accepted_body(self.to, message.wamid if message else "x"))
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            transport = request.transport
            if transport is not None:
                transport.write(head.encode() + body[: len(body) // 2])
            request.protocol.force_close()
            return web.Response(status=500)
        if kind == "huge_body":
            body = orjson.dumps(_accepted_body(self.to, message.wamid if message else "x"))
            return web.Response(
                status=200, body=body + b" " * HUGE_BODY_BYTES, content_type="application/json"
            )
        if kind == "html_502":
            return web.Response(
                status=502,
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            )
        if kind == "redirect_307":
            location = "http://127.0.0.1:9/v23.0/elsewhere/messages"
            return web.Response(status=307, headers={"Location": location})
        if kind == "retry_after_429":
            return web.Response(
                status=429, text="Too Many Requests", headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        if kind == "duplicate_wamid":
            return _json(_accepted_body(self.to, self.previous_wamid or "wamid.none"))
        if kind == "nul_wamid":
            wamid = (message.wamid if message else "wamid.") + "\x00"
            return _json(_accepted_body(self.to, wamid))
        if kind in ("code_over_int32", "code_over_int64"):
            code = 9_999_999_999 if kind == "code_over_int32" else 99_999_999_999_999_999_999
            return _error(400, code, f"(#{code}) Unexpected code")
        if kind == "nul_title":
            return _error(400, 131026, "Message undeliverable\x00 (NUL)")
        raise ValueError(f"unknown odd answer {kind!r}")


class Oddities:
    """Which recipients get an odd answer, each once."""

    def __init__(self, odd_answers: Mapping[str, str], hang_s: float) -> None:
        unknown = set(odd_answers.values()) - set(ODD_KINDS)
        if unknown:
            raise ValueError(f"unknown odd answer kinds: {sorted(unknown)}")
        self._waiting = dict(odd_answers)
        self._hang_s = hang_s
        self.served: dict[str, str] = {}  # to -> kind, once served

    def __bool__(self) -> bool:
        return bool(self._waiting) or bool(self.served)

    def take(
        self,
        raw: bytes,
        request: web.Request,
        accept: Callable[[str, dict[str, Any], float], AcceptedMessage],
        state: MockState,
    ) -> OddAnswer | None:
        """The odd answer for this request (None: a normal one): the first request to a
        listed recipient. `accept` records the message as accepted when the kind means it
        went out (the mock's `_accept`)."""
        try:
            body = orjson.loads(raw)
            to = body["to"]
            kind = self._waiting.pop(to, None)
        except (ValueError, TypeError, KeyError):
            return None
        if kind is None:
            return None
        self.served[to] = kind
        last_wamid = state.accepted[-1].wamid if len(state.accepted) else None
        message = None
        if kind in ACCEPTED_KINDS:
            number = request.match_info["phone_number_id"]
            message = accept(number, body, asyncio.get_running_loop().time())
        return OddAnswer(kind, to, message, last_wamid, self._hang_s)


def _accepted_body(to: str, wamid: str) -> dict[str, object]:
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid, "message_status": "accepted"}],
    }


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _error(status: int, code: int, message: str) -> web.Response:
    # orjson refuses integers beyond 64 bits: the body is written by hand.
    text = orjson.dumps(message).decode()
    body = f'{{"error": {{"message": {text}, "type": "OAuthException", "code": {code}}}}}'

    return web.Response(body=body.encode(), status=status, content_type="application/json")
