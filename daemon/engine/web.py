"""The daemon's web server: the receipts webhook, `/healthz`, `/readyz`, and any extra routes
installed by other components (`/metrics` has a server of its own: engine.metrics).

The webhook answers fast: the signature is checked over the raw bytes before parsing, every
status of the POST is stored in one statement (which also NOTIFYs the reconcilers) together
with those of the POSTs that came in meanwhile (`engine/group_commit.py`), and only once it
committed is 200 returned. A body that was not stored is never acknowledged: a database outage
answers 503 so that Meta delivers it again. A body already stored (the same SHA-256 within
`webhook.replay_window_s`) is acknowledged without being stored again, in that same statement.

Its bounds: connections (`engine/ingress.py`: how many, idle, header and request deadlines,
header size) and bodies (`engine/bodies.py`: size, deadline, the budget of bytes held before
a signature is known). A request over one is answered 408/413/431/503 and its connection
closed without reading the rest.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import asyncpg
from aiohttp import web

from daemon.config import Config
from daemon.core.optout import OptOutRules
from daemon.core.throttle import LogThrottle
from daemon.db.pool import BLOCKED_WRITE_ERRORS, CONNECTION_ERRORS
from daemon.db.sql import query
from daemon.engine.bodies import Body, BodyBudget, BodyRefused, read_body
from daemon.engine.group_commit import GroupCommit
from daemon.engine.inbound import INBOUND_KEY, InboundApplier, running_applier
from daemon.engine.ingress import (
    READ_BUFFER_BYTES,
    ConnectionStats,
    GuardedSite,
    IngressLimits,
    track_requests,
)
from daemon.engine.listening import ListeningStats, apply_listening
from daemon.engine.runtime import Component, Runtime
from daemon.errors import ConfigError, ListenError
from daemon.logs import get_logger
from daemon.whatsapp.signature import SIGNATURE_HEADER, StreamingVerifier, parse_header
from daemon.whatsapp.webhook import (
    ParsedWebhook,
    ReceiptRow,
    WebhookPayloadError,
    handshake_challenge,
    parse_webhook,
)

log = get_logger(__name__)

RouteInstaller = Callable[[web.Application], None]
"""Adds routes (and app keys) to the web app, e.g. `/metrics`."""
ReceiptObserver = Callable[[Sequence[ReceiptRow]], None]
"""Called with the rows of each stored POST (e.g. metrics: receipts by status)."""

STORE_TIMEOUT_S: Final = 5.0
READY_TIMEOUT_S: Final = 1.0
# lock_timeout and statement_timeout of the readiness write probe (under READY_TIMEOUT_S).
WRITE_PROBE_WAIT: Final = "500ms"
SHUTDOWN_TIMEOUT_S: Final = 5.0


@dataclass
class WebhookStats:
    """Counters of the web server: webhook responses by status code, statuses stored, replays
    acknowledged without storing, connections, and the budget of bodies being read."""

    responses: Counter[int] = field(default_factory=Counter)
    stored: int = 0
    ignored_changes: int = 0
    malformed: int = 0  # items of signed POSTs left out (partial batches), the rest applied
    listening: ListeningStats = field(default_factory=ListeningStats)
    replays: int = 0
    connections: ConnectionStats = field(default_factory=ConnectionStats)
    bodies: BodyBudget | None = None  # set by build_web_app


@dataclass(frozen=True)
class WebDeps:
    """What the web app needs; `build_web_app` takes only this, so tests can start it alone."""

    config: Config
    pool: asyncpg.Pool
    stopping: asyncio.Event | None = None  # once set, /readyz answers 503
    extra_routes: Sequence[RouteInstaller] = ()
    on_stored: Sequence[ReceiptObserver] = ()
    stats: WebhookStats | None = None  # given: shared with e.g. metrics
    # Why the daemon's writes are blocked now (the recorder's view), None while they are not.
    writes_blocked: Callable[[], str | None] | None = None


REJECTIONS_LOGGED_PER_S: Final = 10
DEPS_KEY: Final = web.AppKey("wa_sender_web_deps", WebDeps)
REJECTIONS_KEY: Final = web.AppKey("wa_sender_webhook_rejections", LogThrottle)
STATS_KEY: Final = web.AppKey("wa_sender_webhook_stats", WebhookStats)
RULES_KEY: Final = web.AppKey("wa_sender_optout_rules", OptOutRules)
NUMBERS_KEY: Final = web.AppKey("wa_sender_numbers_seen", dict[str, str])
GROUP_KEY: Final = web.AppKey("wa_sender_webhook_group_commit", GroupCommit)


def build_web_app(deps: WebDeps) -> web.Application:
    """The aiohttp app: health routes, the webhook routes when enabled, then extra routes.
    Serve it with `serve_web_app` (the connection bounds)."""
    webhook = deps.config.webhook
    app = web.Application(client_max_size=webhook.max_body_bytes, middlewares=[track_requests])
    app[DEPS_KEY] = deps
    stats = deps.stats if deps.stats is not None else WebhookStats()
    stats.bodies = BodyBudget(webhook.max_pending_bytes)
    app[STATS_KEY] = stats
    app[REJECTIONS_KEY] = LogThrottle(REJECTIONS_LOGGED_PER_S, 1.0)
    optout = deps.config.optout
    app[NUMBERS_KEY] = {}
    app[GROUP_KEY] = GroupCommit(deps.pool, webhook, max_attempts=deps.config.sender.max_attempts)
    app[RULES_KEY] = OptOutRules.from_config(optout.keywords, optout.payloads)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if deps.config.webhook.enabled:
        app.router.add_get(deps.config.webhook.path, verify_subscription)
        app.router.add_post(deps.config.webhook.path, receive_statuses)
        app[INBOUND_KEY] = InboundApplier(deps.pool, stats.listening)
        app.cleanup_ctx.append(running_applier)
    for install in deps.extra_routes:
        install(app)
    return app


@asynccontextmanager
async def serve_web_app(
    app: web.Application, host: str, port: int, *, what: str = "the webhook"
) -> AsyncIterator[str]:
    """Serve `app` on host:port (0: an ephemeral port) for the body; yields the base URL.
    Connections are bounded by the `[webhook]` limits (`engine/ingress.py`). ListenError (one
    line, naming `what` and the address) when it cannot listen there."""
    webhook = app[DEPS_KEY].config.webhook
    limits = IngressLimits(
        max_connections=webhook.max_connections,
        keepalive_timeout_s=webhook.keepalive_timeout_s,
        header_timeout_s=webhook.header_timeout_s,
        body_timeout_s=webhook.body_timeout_s,
    )
    stats = app.get(STATS_KEY)  # the metrics app has none: its connections are counted apart
    connections = stats.connections if stats is not None else ConnectionStats()
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        # The guard ends idle connections and slow headers; aiohttp's own timer only backs it.
        keepalive_timeout=webhook.keepalive_timeout_s + webhook.header_timeout_s + 1.0,
        # A refused body is not read to its end: closing at once costs no CPU or memory.
        lingering_time=0,
        read_bufsize=READ_BUFFER_BYTES,
    )
    await runner.setup()
    try:
        site = GuardedSite(runner, host, port, limits, connections)
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ListenError(
                f"cannot serve {what} on {host}:{port}: {reason} (another wa-sender on this "
                "host? set a different port)"
            ) from None
        base_url = site.name
        log.info("web_server_started", url=base_url)
        yield base_url
    finally:
        await runner.cleanup()


def check_webhook_config(config: Config) -> None:
    """A webhook without the app secret would refuse every POST: refuse to start instead."""
    if config.webhook.enabled and not config.whatsapp.app_secret:
        raise ConfigError(
            "whatsapp.app_secret is not set: set WA_SENDER_WHATSAPP_APP_SECRET or a systemd "
            "credential named app_secret (or set webhook.enabled = false)"
        )


def warn_if_no_verify_token(config: Config) -> None:
    """Log a warning when the webhook runs without a verify token (the GET handshake is refused)."""
    if config.webhook.enabled and not config.whatsapp.verify_token:
        log.warning("webhook_verify_token_missing", hint="the GET handshake will be refused")


def web_component(
    extra_routes: Sequence[RouteInstaller] = (),
    on_stored: Sequence[ReceiptObserver] = (),
    stats: WebhookStats | None = None,
) -> Component:
    """Component of `wa-sender run`: the web server on webhook.host/port.

    Other features plug in here rather than opening a port of their own: `extra_routes` add
    routes (e.g. `web_component(extra_routes=[install_metrics])` in `default_components`),
    `on_stored` observers see the rows of every stored POST, `stats` (when given) is the
    server's counters, shared e.g. with metrics. The webhook routes exist only when
    `webhook.enabled`; health and extra routes are always served.
    """

    @asynccontextmanager
    async def component(runtime: Runtime) -> AsyncIterator[web.Application]:
        config = runtime.config
        check_webhook_config(config)
        deps = WebDeps(
            config,
            runtime.pool,
            runtime.stop,
            extra_routes,
            on_stored,
            stats,
            writes_blocked=runtime.writes_blocked,
        )
        app = build_web_app(deps)
        warn_if_no_verify_token(config)
        async with serve_web_app(app, config.webhook.host, config.webhook.port):
            yield app

    return component


# -- handlers ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 while the database answers and takes the daemon's writes and the
    daemon is not stopping, else 503 (a read-only database, a lock on contacts, a statement
    timeout or a full disk the recorder met: "database blocks writes")."""
    deps = request.app[DEPS_KEY]
    if deps.stopping is not None and deps.stopping.is_set():
        return web.json_response({"status": "stopping"}, status=503)
    blocked = deps.writes_blocked() if deps.writes_blocked is not None else None
    if blocked is not None:
        return web.json_response({"status": "database blocks writes", "error": blocked}, status=503)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), deps.pool.acquire() as conn:
            await conn.fetchval(query("ping"))
            async with conn.transaction():
                await conn.execute(
                    query("write_probe_settings"), WRITE_PROBE_WAIT, WRITE_PROBE_WAIT
                )
                await conn.execute(query("write_probe"))
    except BLOCKED_WRITE_ERRORS as exc:
        return web.json_response(
            {"status": "database blocks writes", "error": type(exc).__name__}, status=503
        )
    except TimeoutError as exc:  # a stalled server, or a lock the probe's timeout missed
        return web.json_response(
            {"status": "database blocks writes", "error": type(exc).__name__}, status=503
        )
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        return web.json_response(
            {"status": "database unavailable", "error": type(exc).__name__}, status=503
        )
    return web.json_response({"status": "ready"})


async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's verification handshake: echo hub.challenge when the verify token matches."""
    deps = request.app[DEPS_KEY]
    challenge = handshake_challenge(request.query, deps.config.whatsapp.verify_token)
    if challenge is None:
        log.warning("webhook_handshake_refused", mode=request.query.get("hub.mode", ""))
        return web.Response(status=403, text="forbidden")
    log.info("webhook_handshake_accepted")
    return web.Response(text=challenge, content_type="text/plain")


async def receive_statuses(request: web.Request) -> web.Response:
    """POST webhook: store the statuses, then answer (counted by status code)."""
    response = await _receive_statuses(request)
    request.app[STATS_KEY].responses[response.status] += 1
    return response


async def _receive_statuses(request: web.Request) -> web.Response:
    deps = request.app[DEPS_KEY]
    webhook = deps.config.webhook
    length = request.content_length
    if length is not None and length > webhook.max_body_bytes:
        return _rejected(request, 413, "body too large", length=length)
    header = request.headers.get(SIGNATURE_HEADER)
    if not header or not header.strip():
        return _rejected(request, 401, "signature missing")
    given = parse_header(header)
    if given is None or not deps.config.whatsapp.app_secret:  # nothing can verify
        return _rejected(request, 403, "signature invalid")
    budget = request.app[STATS_KEY].bodies
    assert budget is not None
    try:
        async with read_body(
            request.content,
            length,
            max_bytes=webhook.max_body_bytes,
            timeout_s=webhook.body_timeout_s,
            budget=budget,
            verifier=StreamingVerifier(deps.config.whatsapp.app_secret, given),
        ) as body:
            if not body.signed:
                return _rejected(request, 403, "signature invalid")
            return await _store(request, body)
    except BodyRefused as exc:
        return _rejected(request, exc.status, exc.reason, length=length)
    except (ConnectionError, web.RequestPayloadError) as exc:
        log.debug("webhook_body_lost", error=repr(exc))  # the client is gone or broke framing
        return _rejected(request, 400, "body not received")


async def _store(request: web.Request, body: Body) -> web.Response:
    deps = request.app[DEPS_KEY]
    stats = request.app[STATS_KEY]
    try:
        parsed = parse_webhook(body.data)
    except WebhookPayloadError as exc:
        return _rejected(request, 400, str(exc))
    for change in parsed.ignored:
        stats.ignored_changes += 1
        log.info("webhook_change_ignored", field=change.field, reason=change.reason)
    if parsed.malformed:
        stats.malformed += len(parsed.malformed)
        log.warning(
            "webhook_items_malformed",
            count=len(parsed.malformed),
            reasons=sorted(set(parsed.malformed))[:5],
            applied_statuses=len(parsed.receipts),
        )
    if parsed.empty:
        return web.Response(text="ok")

    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            new_numbers = bool(parsed.numbers_seen) and _new_numbers(request, parsed)
            if (
                parsed.inbound
                or parsed.preferences
                or parsed.template_events
                or parsed.number_events
                or new_numbers
            ):
                async with deps.pool.acquire() as conn, conn.transaction():
                    await apply_listening(
                        conn, parsed, deps.config, request.app[RULES_KEY], stats.listening
                    )
                if parsed.inbound:
                    request.app[INBOUND_KEY].wake()
            if not parsed.receipts:
                return web.Response(text="ok")
            # Grouped with the POSTs that wait meanwhile; returns once committed.
            result = await request.app[GROUP_KEY].store(parsed.receipts, body.digest)
    except (asyncpg.DataError, UnicodeEncodeError) as exc:
        # e.g. NUL characters or lone surrogates: PostgreSQL cannot hold them, ever.
        return _rejected(request, 400, f"statuses cannot be stored: {type(exc).__name__}")
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        log.warning("webhook_store_failed", statuses=len(parsed.receipts), error=repr(exc))
        return web.Response(status=503, text="try again later")
    if result.replay:
        stats.replays += 1
        log.debug("webhook_replay_acknowledged", statuses=len(parsed.receipts))
        return web.Response(text="ok")
    stats.stored += result.stored
    log.debug("receipt_stored", statuses=result.stored)  # per POST: hundreds a second under load
    for observer in deps.on_stored:
        observer(parsed.receipts)
    return web.Response(text="ok")


def _new_numbers(request: web.Request, parsed: ParsedWebhook) -> bool:
    """Whether the POST names a display number <-> phone_number_id pair not stored yet (it
    is stored once per process: the statuses' hot path stays one statement)."""
    known = request.app[NUMBERS_KEY]
    fresh = {d: i for d, i in parsed.numbers_seen.items() if known.get(d) != i}
    if not fresh:
        parsed.numbers_seen = {}
        return False
    known.update(fresh)
    parsed.numbers_seen = fresh
    return True


def _rejected(request: web.Request, status: int, reason: str, **extra: object) -> web.Response:
    """A refusal: logged (at most `REJECTIONS_LOGGED_PER_S` a second, the others counted),
    answered, and the connection closed (its body is not read on)."""
    logged, suppressed = request.app[REJECTIONS_KEY].allow(asyncio.get_running_loop().time())
    if logged:
        if suppressed:
            extra["not_logged_before"] = suppressed
        log.warning("webhook_rejected", http_status=status, reason=reason, **extra)
    response = web.Response(status=status, text=reason)
    response.force_close()
    return response
