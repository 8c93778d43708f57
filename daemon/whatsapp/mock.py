"""The mock WhatsApp Cloud API: the core of the load-test harness.

Speaks the real wire format: ``POST /{version}/{phone_number_id}/messages`` with a bearer token,
bodies validated against the official schema, real success and error envelopes, a per-number
throughput limit (130429), injected latency and faults, and signed status webhooks posted back.
Out-of-process harnesses read ``GET /_mock/stats`` and ``GET /_mock/messages`` and flip
``POST /_mock/control``; in-process ones use :func:`start_mock_server`. Never touches a database.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from daemon.whatsapp.mock_config import MockConfig
from daemon.whatsapp.mock_errors import error_envelope, error_spec, invalid_token_envelope
from daemon.whatsapp.mock_faults import FaultInjector
from daemon.whatsapp.mock_limits import ThroughputLimiter
from daemon.whatsapp.mock_receipts import ReceiptSender
from daemon.whatsapp.mock_state import AcceptedMessage, MockState
from daemon.whatsapp.mock_validation import (
    RequestProblem,
    TemplateMessageValidator,
    basic_problem,
)

log = structlog.get_logger()

DEFAULT_API_VERSION = "v23.0"
_FBTRACE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_JSON = "application/json"
_NDJSON_CHUNK = 2000
# POST /{version}/{phone_number_id}/messages; aiohttp gives the path percent-decoded.
_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_MESSAGES_PATH = re.compile(r"/v\d+\.\d+/([^/]+)/messages")


class MockApi:
    """One mock instance: its config, state, fault injector, limiter and receipt sender."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        seed = config.seed
        self.state = MockState(dict(config.faults.forced_errors))
        self.faults = FaultInjector(config.faults, random.Random(seed))
        self.receipts = ReceiptSender(config.receipts, random.Random(f"{seed}:receipts"))
        self.limiter = ThroughputLimiter(
            config.limit_per_second, config.limit_burst, config.limit_mode
        )
        self.validator = TemplateMessageValidator() if config.validate else None
        self.closing = asyncio.Event()
        self.started_at = time.time()
        self._ids = random.Random(f"{seed}:ids")
        self._auth = f"Bearer {config.token}".encode()
        self._routes: dict[str, dict[str, _Handler]] = {
            "/healthz": {"GET": self.healthz},
            "/_mock/stats": {"GET": self.get_stats},
            "/_mock/messages": {"GET": self.get_messages},
            "/_mock/control": {"GET": self.get_control, "POST": self.post_control},
        }

    # -- routing -------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request. aiohttp's low-level server with this one dispatcher, not an
        Application and its router: resolving the send route and running the application's
        machinery cost about a tenth of the mock's CPU per message, CPU that a load test on
        one machine takes from the system under test."""
        method, path = request.method, request.path
        if method == "POST" and (match := _MESSAGES_PATH.fullmatch(path)) is not None:
            return await self.send_message(request, match[1])
        routes = self._routes.get(path)
        if routes is None:
            return web.Response(status=404, text="404: Not Found")
        handler = routes.get("GET" if method == "HEAD" else method)
        if handler is None:
            allowed = ",".join(sorted(routes))
            return web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": allowed}
            )
        return await handler(request)

    # -- the Cloud API endpoint ----------------------------------------------------------

    async def send_message(
        self, request: web.BaseRequest, phone_number_id: str
    ) -> web.StreamResponse:
        state = self.state
        state.outcomes["requests"] += 1
        if self.faults.has_latency:
            await asyncio.sleep(self.faults.latency_s())
        if not self._authorized(request):
            state.outcomes["unauthorized"] += 1
            state.record_error(190)
            return self._json(invalid_token_envelope(self._fbtrace_id()), 401)

        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except ValueError:
            return self._invalid(RequestProblem(100, "Unable to parse the request body as JSON."))
        problem = self.validator.check(body) if self.validator else basic_problem(body)
        if problem is None:
            problem = self._template_problem(body)
        if problem is not None:
            return self._invalid(problem)

        to: str = body["to"]
        forced = state.fail_all_code
        if forced is None:
            forced = state.forced_errors.get(to)
        if forced is not None:
            state.outcomes["forced"] += 1
            return self._error(forced)

        loop = asyncio.get_running_loop()
        if not self.limiter.unlimited and not self.limiter.allow(phone_number_id, loop.time()):
            state.outcomes["rate_limited"] += 1
            return self._error(130429)

        fault = self.faults.draw()
        if fault is not None:
            state.outcomes[fault.kind] += 1
            if fault.code is not None:
                return self._error(fault.code)
            if fault.after_accept:
                state.outcomes["lost_responses"] += 1
                self._accept(phone_number_id, body, loop.time())
            if fault.kind == "timeout":
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), self.config.faults.hang_s)
            return self._drop(request)

        message = self._accept(phone_number_id, body, loop.time())
        payload = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": message.wa_id}],
            "messages": [{"id": message.wamid, "message_status": "accepted"}],
        }
        return self._json(payload, 200)

    def _authorized(self, request: web.BaseRequest) -> bool:
        header = request.headers.get("Authorization")
        if header is None:
            token = request.query.get("access_token")
            header = f"Bearer {token}" if token else ""
        return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), self._auth)

    def _template_problem(self, body: Any) -> RequestProblem | None:
        template = body.get("template")
        name = template.get("name") if isinstance(template, dict) else None
        if not isinstance(name, str):
            return None
        known = self.config.known_templates
        if known is not None and name not in known:
            details = f"template name ({name}) does not exist in the translation"
            return RequestProblem(132001, details)
        expected = self.config.template_param_counts.get(name)
        if expected is None:
            return None
        got = sum(
            len(component.get("parameters") or [])
            for component in template.get("components") or []
            if isinstance(component, dict) and component.get("type") == "body"
        )
        if got != expected:
            return RequestProblem(
                132000,
                f"body: number of localizable_params ({got}) does not match the expected"
                f" number of params ({expected})",
            )
        return None

    def _accept(self, phone_number_id: str, body: dict[str, Any], mono: float) -> AcceptedMessage:
        template = body.get("template")
        name = template.get("name") if isinstance(template, dict) else None
        callback = body.get("biz_opaque_callback_data")
        message = self.state.record_accepted(
            phone_number_id,
            body["to"],
            callback if isinstance(callback, str) else None,
            name if isinstance(name, str) else "",
            time.time(),
            mono,
        )
        self.receipts.schedule(message)
        if self.config.log_requests:
            log.debug("mock_message_accepted", seq=message.seq, phone_number_id=phone_number_id)
        return message

    def _invalid(self, problem: RequestProblem) -> web.Response:
        self.state.outcomes["invalid"] += 1
        return self._error(problem.code, problem.details)

    def _error(self, code: int, details: str | None = None) -> web.Response:
        self.state.record_error(code)
        if self.config.log_requests:
            log.debug("mock_message_refused", code=code)
        spec = error_spec(code)
        return self._json(error_envelope(code, self._fbtrace_id(), details), spec.http_status)

    def _drop(self, request: web.BaseRequest) -> web.Response:
        # Close the socket without an answer; aiohttp then fails to write the placeholder
        # response below and swallows that ConnectionError.
        request.protocol.force_close()
        return web.Response(status=500)

    def _json(self, payload: dict[str, Any], status: int) -> web.Response:
        return web.Response(
            body=orjson.dumps(payload),
            status=status,
            content_type=_JSON,
        )

    def _fbtrace_id(self) -> str:
        return "A" + "".join(self._ids.choices(_FBTRACE_ALPHABET, k=22))

    # -- harness endpoints ---------------------------------------------------------------

    async def healthz(self, request: web.BaseRequest) -> web.Response:
        return self._json({"status": "ok"}, 200)

    def stats(self) -> dict[str, Any]:
        return {
            **self.state.stats(),
            "receipts": self.receipts.stats(),
            "pending": self.receipts.pending,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    async def get_stats(self, request: web.BaseRequest) -> web.Response:
        return self._json(self.stats(), 200)

    async def get_messages(self, request: web.BaseRequest) -> web.StreamResponse:
        """Accepted messages from ``since`` (seq), as a JSON array or NDJSON, streamed."""
        try:
            since = int(request.query.get("since", "0"))
            limit = int(request.query.get("limit", "-1"))
        except ValueError:
            return self._json({"error": "since and limit must be integers"}, 400)
        ndjson = request.query.get("format", "json") == "ndjson"
        log_ = self.state.accepted
        end = len(log_) if limit < 0 else min(len(log_), since + limit)
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson" if ndjson else _JSON}
        )
        await response.prepare(request)
        if not ndjson:
            await response.write(b"[")
        for start in range(max(0, since), end, _NDJSON_CHUNK):
            lines = [
                orjson.dumps(message.as_json()).decode()
                for message in log_[start : min(end, start + _NDJSON_CHUNK)]
            ]
            if ndjson:
                chunk = "".join(line + "\n" for line in lines)
            else:
                chunk = ("," if start > max(0, since) else "") + ",".join(lines)
            await response.write(chunk.encode())
        if not ndjson:
            await response.write(b"]")
        await response.write_eof()
        return response

    async def get_control(self, request: web.BaseRequest) -> web.Response:
        return self._json(self._control_view(), 200)

    async def post_control(self, request: web.BaseRequest) -> web.Response:
        """``{"fail_all": code|null, "force_errors": {to: code|null}, "clear_forced": bool}``."""
        try:
            command = await request.json()
            if not isinstance(command, dict):
                raise ValueError("expected a JSON object")
            self.apply_control(command)
        except (ValueError, TypeError) as exc:
            return self._json({"error": str(exc)}, 400)
        return self._json(self._control_view(), 200)

    def apply_control(self, command: dict[str, Any]) -> None:
        unknown = set(command) - {"fail_all", "force_errors", "clear_forced"}
        if unknown:
            raise ValueError(f"unknown control fields: {sorted(unknown)}")
        if command.get("clear_forced"):
            self.state.forced_errors.clear()
        if "fail_all" in command:
            self.state.set_fail_all(_optional_code(command["fail_all"]))
        forced = command.get("force_errors") or {}
        if not isinstance(forced, dict):
            raise ValueError("force_errors must be an object of to -> code")
        for to, code in forced.items():
            self.state.force_error(str(to), _optional_code(code))
        log.info(
            "mock_control_changed",
            fail_all_code=self.state.fail_all_code,
            forced_errors=len(self.state.forced_errors),
        )

    def _control_view(self) -> dict[str, Any]:
        return {"fail_all": self.state.fail_all_code, "force_errors": self.state.forced_errors}


def _optional_code(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"error code must be an integer or null, got {value!r}")
    return value


@dataclass(frozen=True)
class RunningMock:
    """A mock server listening on loopback; ``base_url`` has no trailing slash."""

    base_url: str
    api: MockApi

    @property
    def state(self) -> MockState:
        return self.api.state

    @property
    def receipts(self) -> ReceiptSender:
        return self.api.receipts

    @property
    def config(self) -> MockConfig:
        return self.api.config

    def messages_url(self, phone_number_id: str, version: str = DEFAULT_API_VERSION) -> str:
        return f"{self.base_url}/{version}/{phone_number_id}/messages"


@asynccontextmanager
async def start_mock_server(
    config: MockConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[RunningMock]:
    """Serve a mock on ``host:port`` (port 0: an ephemeral one) for the ``async with`` body."""
    api = MockApi(config or MockConfig())
    runner = web.ServerRunner(
        web.Server(api.handle, access_log=None), shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    await api.receipts.start()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningMock(base_url=f"http://{url_host}:{bound_port}", api=api)
    finally:
        api.closing.set()  # requests hanging on purpose (timeout faults) answer now
        try:
            await runner.cleanup()
        finally:
            await api.receipts.stop()


async def run_mock_server(
    config: MockConfig,
    host: str,
    port: int,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the mock until SIGINT/SIGTERM (or cancellation); ``on_ready`` gets the base URL."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        async with start_mock_server(config, host, port) as mock:
            log.info(
                "mock_api_started",
                base_url=mock.base_url,
                validate=config.validate,
                limit_per_second=config.limit_per_second,
                fault_rate=config.faults.error_rate,
                receipts=config.receipts.enabled,
            )
            if on_ready is not None:
                on_ready(mock.base_url)
            await stop.wait()
            log.info(
                "mock_api_stopping",
                requests=mock.state.requests,
                accepted=len(mock.state.accepted),
                receipts_pending=mock.receipts.pending,
            )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
