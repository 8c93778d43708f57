"""The composition root of `wa-sender run` and `wa-sender webhook`.

`run_daemon` wires the pool, the HTTP client, the sender, the upkeep loops and the optional
web server (webhook, metrics); `run_webhook` the webhook server and the reconciler alone,
without the sender, to scale receipt intake out over several processes or hosts (one
database). Each owns its tasks (`TaskOwner`) and shuts down in order on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime

import asyncpg

from daemon import version
from daemon.config import Config
from daemon.core.ratelimit import RateLimiters, burst_for
from daemon.db import daemons
from daemon.db import sender_store as store
from daemon.db.migrate import require_current_schema
from daemon.db.pool import open_pool
from daemon.db.sql import query
from daemon.engine.claimer import utc_now
from daemon.engine.listener import listen_for_campaign_changes
from daemon.engine.numbers import number_health_loop
from daemon.engine.optout_watch import OPT_OUTS_CHANNEL, OptOutWatch
from daemon.engine.reconciler import Reconciler, reconciler_component, reconciler_tasks
from daemon.engine.recorder import ResultRecorder
from daemon.engine.runtime import Component, Runtime, TaskOwner, stop_on_signals
from daemon.engine.schedule import Scheduler
from daemon.engine.sender import Sender, SendObserver
from daemon.engine.spool import Spooler
from daemon.engine.stops import StopWatcher
from daemon.engine.systemd import SystemdNotifier
from daemon.engine.upkeep import (
    beat_numbers,
    digest_prune_loop,
    heartbeat_loop,
    new_daemon_id,
    recovery_loop,
    send_bound_s,
)
from daemon.engine.web import (
    WebDeps,
    WebhookStats,
    build_web_app,
    check_webhook_config,
    serve_web_app,
    warn_if_no_verify_token,
    web_component,
)
from daemon.engine.windows import WindowKeeper
from daemon.errors import ConfigError, DatabaseBlockedError, WaSenderError
from daemon.logs import get_logger
from daemon.whatsapp.client import CloudApiClient

log = get_logger(__name__)

STATUS_EVERY_S = 5.0


def default_components(config: Config) -> list[Component]:
    """The receipts reconciler, metrics (their own server: /metrics, health), and the webhook
    server (webhook, health).

    The reconciler comes first so that it stops after the web server (components are left in
    reverse order)."""
    components: list[Component] = [reconciler_component]
    on_stored = []
    stats = WebhookStats()
    if config.metrics.enabled:
        from daemon.engine.metrics import Metrics, metrics_component
        from daemon.engine.webhook_metrics import WebhookCollector

        metrics = Metrics()
        metrics.registry.register(WebhookCollector(stats))
        components.append(metrics_component(metrics, stats))
        on_stored.append(metrics.on_receipts_stored)
    if config.webhook.enabled:
        check_webhook_config(config)  # before anything starts: one clear line, no traceback
        components.append(web_component(on_stored=on_stored, stats=stats))
    return components


# The API counts arrivals, not sends: requests leave on schedule but reach it with a few ms
# of jitter, so the bucket keeps this much of the burst in reserve.
ARRIVAL_JITTER_S = 0.01


def sending_burst(rate_per_second: float, burst: float) -> float:
    """The bucket size to send with: the burst (`sender.burst`, 0 = automatic) less the arrival
    jitter's share."""
    return max(1.0, burst_for(rate_per_second, burst) - rate_per_second * ARRIVAL_JITTER_S)


def check_config_for_run(config: Config) -> None:
    """Refuse to start without an access token (one clear line)."""
    if not config.whatsapp.access_token:
        raise ConfigError(
            "whatsapp.access_token is not set: set WA_SENDER_WHATSAPP_ACCESS_TOKEN "
            "or a systemd credential named access_token"
        )


async def run_daemon(
    config: Config,
    dsn: str,
    *,
    stop: asyncio.Event | None = None,
    components: list[Component] | None = None,
    on_send: SendObserver | None = None,
    install_signal_handlers: bool = True,
    wall_clock: Callable[[], datetime] = utc_now,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`); return the exit code. `wall_clock`: the time the
    planning rules go by (scheduled starts, send windows, finish-by; tests inject one)."""
    check_config_for_run(config)
    stop = stop or asyncio.Event()
    if install_signal_handlers:
        stop_on_signals(stop)
    notifier = SystemdNotifier()
    daemon_id = new_daemon_id()
    tasks = TaskOwner(stop)
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            open_pool(dsn, min_size=config.database.pool_min, max_size=config.database.pool_max)
        )
        async with pool.acquire() as conn:
            await require_current_schema(conn)
        client = await stack.enter_async_context(
            CloudApiClient(
                config.whatsapp.base_url,
                config.whatsapp.api_version,
                config.whatsapp.access_token,
                timeout_s=config.whatsapp.request_timeout_s,
                max_connections=config.whatsapp.max_connections,
                max_response_bytes=config.whatsapp.max_response_bytes,
            )
        )
        limiters = RateLimiters(
            config.sender.rate_per_second,
            sending_burst(config.sender.rate_per_second, config.sender.burst),
        )
        spool = Spooler(config, await _database_name(pool))
        await spool.replay(pool)  # before anything claims or recovers leases
        recorder = ResultRecorder(
            pool,
            flush_interval_s=config.sender.flush_interval_s,
            max_batch=config.sender.batch_size * 4,
            write_timeout_s=config.database.write_timeout_s,
        )
        sender = Sender(
            pool,
            client,
            config,
            daemon_id,
            limiters,
            recorder,
            on_send=on_send,
            wall_clock=wall_clock,
        )
        runtime = Runtime(config, dsn, pool, daemon_id, sender, recorder, stop)
        stack.callback(_close_unstarted, runtime)
        for component in components or []:
            await stack.enter_async_context(component(runtime))

        # Registered once its ports are bound: a daemon that cannot start must not count as
        # live (a share of the rate, a stop to confirm) for the others.
        bound_s = send_bound_s(config.whatsapp.request_timeout_s)
        async with pool.acquire() as conn:
            confirmed = await daemons.register_daemon(
                conn, daemon_id, *_host_pid(), bound_s, version()
            )
        stops = StopWatcher(pool, daemon_id, sender, recorder, confirmed)

        def beat() -> store.Beat:
            numbers = beat_numbers(limiters)
            return store.Beat(stops.confirmed_seq, numbers, sender.stats.sent, bound_s)

        scheduler = Scheduler(pool, wall_clock, sender.wake)
        windows = WindowKeeper(pool, config, wall_clock, sender.wake)

        def campaigns_changed() -> None:
            sender.wake()
            stops.wake()
            scheduler.wake()
            windows.wake()

        tasks.start("recorder", recorder.run())
        tasks.start(
            "heartbeat", heartbeat_loop(pool, daemon_id, limiters, sender.note_heartbeat, beat)
        )
        if notifier.watchdog_interval_s:
            # The event loop is alive even while the database is away: a long outage must not
            # get the daemon killed with results still waiting in memory.
            tasks.start("watchdog", _watchdog_loop(notifier, notifier.watchdog_interval_s))
        tasks.start("recovery", recovery_loop(pool, config, daemon_id, sender.wake))
        tasks.start("number_health", number_health_loop(pool, config, limiters))
        tasks.start("stops", stops.run())
        tasks.start("schedule", scheduler.run())
        tasks.start("windows", windows.run())
        opt_outs = OptOutWatch(pool, sender)
        tasks.start(
            "listener",
            listen_for_campaign_changes(
                dsn, campaigns_changed, {OPT_OUTS_CHANNEL: opt_outs.on_notify}
            ),
        )
        tasks.start("opt_out_poll", opt_outs.run_poll())
        if config.webhook.enabled:
            tasks.start("digests", digest_prune_loop(pool, config.webhook.replay_window_s))
        tasks.start("status", _status_loop(sender, notifier))
        tasks.start("write_watch", spool.watch_blocked(recorder, stop))
        for name, coro in runtime.extra_tasks.items():
            tasks.start(name, coro)
        runtime.extra_tasks.clear()
        claim = tasks.start("claim", sender.run(stop))
        notifier.ready("sending")
        log.info(
            "daemon_started",
            daemon_id=daemon_id,
            rate=config.sender.rate_per_second,
            event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        )

        await stop.wait()
        notifier.stopping()
        log.info("daemon_stopping", daemon_id=daemon_id)
        started = time.monotonic()
        if not claim.done():
            await asyncio.wait([claim], timeout=5.0)
            claim.cancel()
        await sender.shutdown(config.sender.shutdown_timeout_s)
        await tasks.cancel_all()
        spooled = spool.keep(daemon_id, sender.unwritten)
        try:
            async with pool.acquire() as conn:
                await store.forget_daemon(conn, daemon_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("forget_daemon_failed", error=repr(exc))
        log.info(
            "daemon_stopped",
            daemon_id=daemon_id,
            sent=sender.stats.sent,
            claimed=sender.claimed,
            released=sender.stats.released,
            unknown_outcome=sender.stats.unknown_outcome,
            shutdown_s=round(time.monotonic() - started, 3),
        )
    notifier.close()
    if spooled is not None:
        raise DatabaseBlockedError(spool.exit_line(recorder, sender.unwritten, spooled))
    if tasks.failed:
        failed = ", ".join(tasks.failed)
        raise WaSenderError(f"daemon stopped because a background task failed: {failed}")
    return 0


async def _database_name(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        name: str = await conn.fetchval(query("database_name"))
    return name


async def run_webhook(
    config: Config,
    dsn: str,
    *,
    stop: asyncio.Event | None = None,
    install_signal_handlers: bool = True,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve the webhook and reconcile until SIGTERM/SIGINT (or `stop`); the exit code.
    `on_ready` gets the server's base URL once it listens."""
    check_webhook_config(config)
    stop = stop or asyncio.Event()
    if install_signal_handlers:
        stop_on_signals(stop)
    notifier = SystemdNotifier()
    tasks = TaskOwner(stop)
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            open_pool(dsn, min_size=config.database.pool_min, max_size=config.database.pool_max)
        )
        async with pool.acquire() as conn:
            await require_current_schema(conn)
        reconciler = Reconciler(pool, config.webhook, max_attempts=config.sender.max_attempts)
        for name, coro in reconciler_tasks(reconciler, dsn).items():
            tasks.start(name, coro)
        tasks.start("digests", digest_prune_loop(pool, config.webhook.replay_window_s))
        try:
            app = build_web_app(WebDeps(config, pool, stop))
            warn_if_no_verify_token(config)
            # The server stops first (no new receipts), then the reconciler, then the pool.
            async with serve_web_app(app, config.webhook.host, config.webhook.port) as base_url:
                notifier.ready("receiving status webhooks")
                log.info("webhook_service_started", url=base_url)
                if on_ready is not None:
                    on_ready(base_url)
                await stop.wait()
                notifier.stopping()
                log.info("webhook_service_stopping")
        finally:
            await tasks.cancel_all()
        stats = reconciler.stats
        log.info(
            "webhook_service_stopped",
            applied=stats.applied,
            duplicate=stats.duplicate,
            orphaned=stats.orphaned,
        )
    notifier.close()
    if tasks.failed:
        failed = ", ".join(tasks.failed)
        raise WaSenderError(f"webhook service stopped because a task failed: {failed}")
    return 0


def _close_unstarted(runtime: Runtime) -> None:
    """Tasks components registered but the daemon never started (it failed first): closed,
    so that no 'coroutine was never awaited' warning follows the error line."""
    for coro in runtime.extra_tasks.values():
        coro.close()
    runtime.extra_tasks.clear()


def _host_pid() -> tuple[str, int]:
    import os
    import socket

    return socket.gethostname(), os.getpid()


async def _watchdog_loop(notifier: SystemdNotifier, every_s: float) -> None:
    while True:
        notifier.watchdog()
        await asyncio.sleep(every_s)


async def _status_loop(sender: Sender, notifier: SystemdNotifier) -> None:
    last_sent, last_at = 0, time.monotonic()
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        now = time.monotonic()
        rate = (sender.stats.sent - last_sent) / (now - last_at)
        last_sent, last_at = sender.stats.sent, now
        text = (
            f"sent {sender.stats.sent} ({rate:.0f}/s), queued {sender.queued}, "
            f"in flight {sender.inflight}"
        )
        notifier.status(text)
        if rate or sender.queued or sender.inflight:
            log.info(
                "sender_status",
                sent=sender.stats.sent,
                rate=round(rate, 1),
                queued=sender.queued,
                inflight=sender.inflight,
            )
