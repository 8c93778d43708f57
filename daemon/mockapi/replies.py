"""The mock's refusals as Graph sends them: (HTTP status, JSON body) with Meta's envelopes
(`mockapi.errors`) and a fresh fbtrace_id, each counted in the mock's state. Shared by the
send endpoints (`mockapi.server`) and the management ones (`mockapi.management`)."""

from __future__ import annotations

import random

import orjson
import structlog

from daemon.mockapi.errors import (
    error_envelope,
    error_spec,
    invalid_token_envelope,
    unknown_object_envelope,
)
from daemon.mockapi.state import MockState
from daemon.mockapi.validation import RequestProblem

log = structlog.get_logger()

_FBTRACE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


class Replies:
    """Graph's error answers for one mock: counted in `state`, traced with ids drawn from
    `ids` (seeded, so that a run can be replayed)."""

    def __init__(self, state: MockState, ids: random.Random, *, log_requests: bool) -> None:
        self._state = state
        self._ids = ids
        self._log_requests = log_requests

    def error(self, code: int, details: str | None = None) -> tuple[int, bytes]:
        """The envelope of `code` (its HTTP status from Meta's table)."""
        self._state.record_error(code)
        if self._log_requests:
            log.debug("mock_message_refused", code=code)
        spec = error_spec(code)
        return spec.http_status, orjson.dumps(error_envelope(code, self.fbtrace_id(), details))

    def invalid(self, problem: RequestProblem) -> tuple[int, bytes]:
        """A request the mock refuses as invalid (schema, template check, upload)."""
        self._state.outcomes["invalid"] += 1
        return self.error(problem.code, problem.details)

    def unknown_object(self, object_id: str, method: str) -> tuple[int, bytes]:
        """Graph's 400, code 100 subcode 33: no object with that id (a phone_number_id, a
        WABA) the token may use."""
        self._state.outcomes["unknown_object"] += 1
        self._state.record_error(100)
        return 400, orjson.dumps(unknown_object_envelope(object_id, method, self.fbtrace_id()))

    def invalid_token(self) -> tuple[int, bytes]:
        """401, code 190 (not counted: the caller counts what it serves)."""
        return 401, orjson.dumps(invalid_token_envelope(self.fbtrace_id()))

    def fbtrace_id(self) -> str:
        """A trace id of Graph's shape."""
        return "A" + "".join(self._ids.choices(_FBTRACE_ALPHABET, k=22))
