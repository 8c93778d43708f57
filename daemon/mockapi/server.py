"""The mock WhatsApp Cloud API: the core of the load-test harness.

Speaks the real wire format: ``POST /{version}/{phone_number_id}/messages`` with a bearer token,
bodies validated against the official schema, real success and error envelopes, a per-number
throughput limit (130429), injected latency and faults, and signed status webhooks posted back.
Out-of-process harnesses read ``GET /_mock/stats`` and ``GET /_mock/messages`` and flip
``POST /_mock/control``; in-process ones use :func:`start_mock_server`. Never touches a database.
Plain sends are answered by the fast lane (``mockapi.fastlane``), everything else by aiohttp; both
serve `MockApi.answer`.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from daemon.mockapi.catalogue import SAMPLE_TEMPLATES, Catalogue
from daemon.mockapi.config import MockConfig
from daemon.mockapi.events import install_event_routes
from daemon.mockapi.fastlane import Answer, FastLanes, FastLaneSite, Unanswered
from daemon.mockapi.faults import FaultInjector, optional_code
from daemon.mockapi.limits import ThroughputLimiter
from daemon.mockapi.management import ManagementEndpoints
from daemon.mockapi.oddities import Oddities
from daemon.mockapi.receipts import ReceiptSender
from daemon.mockapi.replies import Replies
from daemon.mockapi.state import AcceptedMessage, MockState
from daemon.mockapi.template_check import configured_template_problem, send_template_problem
from daemon.mockapi.validation import (
    RequestProblem,
    TemplateMessageValidator,
    basic_problem,
    fast_marketing_top_valid,
    fast_top_valid,
)

log = structlog.get_logger()

DEFAULT_API_VERSION = "v23.0"
_JSON = "application/json"
_NDJSON_CHUNK = 2000
MESSAGES = "messages"
MARKETING_MESSAGES = "marketing_messages"


class MockApi:
    """One mock instance: its config, state, fault injector, limiter and receipt sender."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        seed = config.seed
        self.state = MockState(dict(config.faults.forced_errors))
        self.faults = FaultInjector(config.faults, random.Random(seed))
        self.oddities = Oddities(config.faults.odd_answers, config.faults.hang_s)
        self.receipts = ReceiptSender(config.receipts, random.Random(f"{seed}:receipts"))
        self.limiter = ThroughputLimiter(
            config.limit_per_second, config.limit_burst, config.limit_mode
        )
        self.validator = TemplateMessageValidator() if config.validate else None
        self.marketing_validator = (
            TemplateMessageValidator(marketing=True) if config.validate else None
        )
        templates = SAMPLE_TEMPLATES if config.templates is None else config.templates
        self.catalogue = Catalogue(templates, strict=config.strict_templates)
        self.closing = asyncio.Event()
        self.started_at = time.time()
        self.replies = Replies(
            self.state, random.Random(f"{seed}:ids"), log_requests=config.log_requests
        )
        self.management = ManagementEndpoints(
            config, self.state, self.catalogue, self.replies, random.Random(f"{seed}:media")
        )
        self._auth = f"Bearer {config.token}".encode()
        self.lanes = FastLanes(self)

    # -- the Cloud API endpoint ----------------------------------------------------------

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler; connections the fast lane takes serve the same `answer`."""
        return await self._send(request, MESSAGES)

    async def send_marketing_message(self, request: web.Request) -> web.StreamResponse:
        """``POST /{version}/{phone_number_id}/marketing_messages``: the Marketing Messages
        API, MARKETING templates only (131055 for the others); receipts as for /messages."""
        return await self._send(request, MARKETING_MESSAGES)

    async def _send(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        self.arrived()
        latency_s = self.latency_s
        if latency_s is not None:
            await asyncio.sleep(latency_s)
        header = request.headers.get("Authorization")
        if header is None:
            token = request.query.get("access_token")
            header = f"Bearer {token}" if token else ""
        raw = await request.read()
        if self.oddities and (odd := self.oddities.take(raw, request, self._accept, self.state)):
            return await odd.serve(request)
        answer = self.answer(
            request.match_info["phone_number_id"],
            header.encode("utf-8", "surrogateescape"),
            raw,
            endpoint,
        )
        if answer is Unanswered.HANG:
            await self.hang()
        if isinstance(answer, Unanswered):
            # Close the socket without an answer; aiohttp then fails to write the placeholder
            # response below and swallows that ConnectionError.
            request.protocol.force_close()
            return web.Response(status=500)
        status, body = answer
        return web.Response(body=body, status=status, content_type=_JSON)

    @property
    def latency_s(self) -> float | None:
        """The latency to wait before the next answer, None for none."""
        return self.faults.latency_s() if self.faults.has_latency else None

    def arrived(self) -> None:
        """Counted when a send request arrives, before its latency."""
        self.state.outcomes["requests"] += 1

    async def hang(self) -> None:
        """A timeout fault: hold the request until `hang_s` passes or the mock shuts down."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), self.config.faults.hang_s)

    def answer(
        self, phone_number_id: str, authorization: bytes, raw: bytes, endpoint: str = MESSAGES
    ) -> Answer:
        """What the API answers one send, its latency already waited: (HTTP status, JSON
        body), or no answer at all. `authorization` is the header's value as sent."""
        state = self.state
        if not hmac.compare_digest(authorization, self._auth):
            state.outcomes["unauthorized"] += 1
            state.record_error(190)
            return self.replies.invalid_token()
        known_numbers = self.config.phone_number_ids
        if known_numbers is not None and phone_number_id not in known_numbers:
            return self._unknown_object(phone_number_id, "post")
        try:
            body = orjson.loads(raw)
        except ValueError:
            return self._invalid(RequestProblem(100, "Unable to parse the request body as JSON."))
        marketing = endpoint == MARKETING_MESSAGES
        validator = self.marketing_validator if marketing else self.validator
        fit = self.catalogue.fit_for(body) if validator is not None else None
        if (
            fit is not None
            and (fast_marketing_top_valid if marketing else fast_top_valid)(body)
            and fit.fits(body["template"], marketing)
        ):
            # A known template's body, valid and fitting in one pass (mockapi.template_fit).
            problem = configured_template_problem(body["template"], self.config)
        elif marketing and isinstance(body, dict) and body.get("type") != "template":
            problem = RequestProblem(100, "Message must be a template message.")
        else:
            problem = validator.check(body) if validator else basic_problem(body)
            if problem is None:
                problem = send_template_problem(
                    body,
                    self.catalogue,
                    self.config,
                    validated=validator is not None,
                    marketing=marketing,
                )
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
            return Unanswered.HANG if fault.kind == "timeout" else Unanswered.DROP

        message = self._accept(phone_number_id, body, loop.time())
        if endpoint != MESSAGES:
            state.accepted_by_endpoint[endpoint] += 1
        if self.config.record_bodies:
            state.bodies.append((endpoint, phone_number_id, body))
        payload = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": message.wa_id}],
            "messages": [{"id": message.wamid, "message_status": "accepted"}],
        }
        return 200, orjson.dumps(payload)

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

    def _unknown_object(self, object_id: str, method: str) -> tuple[int, bytes]:
        return self.replies.unknown_object(object_id, method)

    def _invalid(self, problem: RequestProblem) -> tuple[int, bytes]:
        return self.replies.invalid(problem)

    def _error(self, code: int, details: str | None = None) -> tuple[int, bytes]:
        return self.replies.error(code, details)

    def _json(self, payload: dict[str, Any], status: int) -> web.Response:
        return web.Response(body=orjson.dumps(payload), status=status, content_type=_JSON)

    def _fbtrace_id(self) -> str:
        return self.replies.fbtrace_id()

    # -- harness endpoints ---------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: always ok once listening."""
        return self._json({"status": "ok"}, 200)

    def stats(self) -> dict[str, Any]:
        """Counters of requests, outcomes, receipts and the fast lane (JSON-able)."""
        return {
            **self.state.stats(),
            "receipts": {**self.receipts.stats(), "opted_out": self.receipts.opt_out_phones()},
            "pending": self.receipts.pending,
            "uptime_s": round(time.time() - self.started_at, 3),
            "fast_lane": {"served": self.lanes.served, "handed_off": self.lanes.handed_off}
            if self.config.fast_lane
            else None,
        }

    async def get_stats(self, request: web.Request) -> web.Response:
        """``GET /_mock/stats``: `stats` as JSON."""
        return self._json(self.stats(), 200)

    async def get_messages(self, request: web.Request) -> web.StreamResponse:
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

    async def get_control(self, request: web.Request) -> web.Response:
        """``GET /_mock/control``: the runtime switches now."""
        return self._json(self._control_view(), 200)

    async def post_control(self, request: web.Request) -> web.Response:
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
        """Apply one control command (see `post_control`); ValueError if bad."""
        unknown = set(command) - {"fail_all", "force_errors", "clear_forced"}
        if unknown:
            raise ValueError(f"unknown control fields: {sorted(unknown)}")
        if command.get("clear_forced"):
            self.state.forced_errors.clear()
        if "fail_all" in command:
            self.state.set_fail_all(optional_code(command["fail_all"]))
        forced = command.get("force_errors") or {}
        if not isinstance(forced, dict):
            raise ValueError("force_errors must be an object of to -> code")
        for to, code in forced.items():
            self.state.force_error(str(to), optional_code(code))
        log.info(
            "mock_control_changed",
            fail_all_code=self.state.fail_all_code,
            forced_errors=len(self.state.forced_errors),
        )

    def _control_view(self) -> dict[str, Any]:
        return {"fail_all": self.state.fail_all_code, "force_errors": self.state.forced_errors}


API_KEY = web.AppKey("mock_api", MockApi)
STATE_KEY = web.AppKey("mock_state", MockState)
RECEIPTS_KEY = web.AppKey("mock_receipts", ReceiptSender)
LANES_KEY = web.AppKey("mock_fast_lanes", FastLanes)
# How long busy fast-lane connections get at shutdown to finish their answer.
FAST_LANE_DRAIN_S = 5.0


def build_mock_app(config: MockConfig) -> web.Application:
    """The mock Cloud API as an aiohttp application (receipt tasks owned by cleanup_ctx)."""
    api = MockApi(config)
    app = web.Application()
    app[API_KEY] = api
    app[STATE_KEY] = api.state
    app[RECEIPTS_KEY] = api.receipts
    app[LANES_KEY] = api.lanes
    app.router.add_post(r"/{version:v\d+\.\d+}/{phone_number_id}/messages", api.send_message)
    app.router.add_post(
        r"/{version:v\d+\.\d+}/{phone_number_id}/marketing_messages", api.send_marketing_message
    )
    app.router.add_post(
        r"/{version:v\d+\.\d+}/{phone_number_id}/media", api.management.upload_media
    )
    app.router.add_get(
        r"/{version:v\d+\.\d+}/{waba_id}/message_templates", api.management.list_templates
    )
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/_mock/stats", api.get_stats)
    app.router.add_get("/_mock/messages", api.get_messages)
    app.router.add_get("/_mock/control", api.get_control)
    app.router.add_post("/_mock/control", api.post_control)
    install_event_routes(app, api.receipts)  # POST /_control/template_status, ...
    app.on_shutdown.append(_release_hanging_requests)
    app.on_shutdown.append(_drain_fast_lanes)  # after the release: hanging sends end first
    app.cleanup_ctx.append(_receipts_lifecycle)
    return app


async def _release_hanging_requests(app: web.Application) -> None:
    app[API_KEY].closing.set()


async def _drain_fast_lanes(app: web.Application) -> None:
    await app[LANES_KEY].drain(FAST_LANE_DRAIN_S)


async def _receipts_lifecycle(app: web.Application) -> AsyncIterator[None]:
    receipts = app[RECEIPTS_KEY]
    await receipts.start()
    try:
        yield
    finally:
        await receipts.stop()


@dataclass(frozen=True)
class RunningMock:
    """A mock server listening on loopback; ``base_url`` has no trailing slash."""

    base_url: str
    app: web.Application

    @property
    def api(self) -> MockApi:
        """The mock's request handlers and their state."""
        return self.app[API_KEY]

    @property
    def state(self) -> MockState:
        """Counters and accepted messages."""
        return self.app[STATE_KEY]

    @property
    def receipts(self) -> ReceiptSender:
        """The status webhook sender."""
        return self.app[RECEIPTS_KEY]

    @property
    def config(self) -> MockConfig:
        """The configuration it runs with."""
        return self.api.config

    def messages_url(self, phone_number_id: str, version: str = DEFAULT_API_VERSION) -> str:
        """The send endpoint URL for ``phone_number_id``."""
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
    app = build_mock_app(config or MockConfig())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site: web.BaseSite
        if app[API_KEY].config.fast_lane and not app[API_KEY].oddities:
            site = FastLaneSite(runner, app[LANES_KEY], host, port)
        else:
            site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningMock(base_url=f"http://{url_host}:{bound_port}", app=app)
    finally:
        await runner.cleanup()


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
