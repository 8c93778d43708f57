"""`wa-sender webhook`: the receipts webhook server and the reconciler alone, without the
sender, to scale receipt intake out over several processes or hosts (one database)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from daemon.config import Config, with_overrides
from daemon.db.database import database_dsn
from daemon.db.migrate import require_current_schema
from daemon.db.pool import open_pool
from daemon.engine import eventloop
from daemon.engine.reconciler import Reconciler, reconciler_tasks
from daemon.engine.runtime import TaskOwner, stop_on_signals
from daemon.engine.systemd import SystemdNotifier
from daemon.engine.web import (
    WebDeps,
    build_web_app,
    check_webhook_config,
    serve_web_app,
    warn_if_no_verify_token,
)
from daemon.errors import WaSenderError
from daemon.logs import configure_logging, get_logger

log = get_logger(__name__)


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "webhook",
        help="the receipts webhook server and reconciler alone, to scale out (until SIGTERM)",
    )
    p.add_argument("--host", help="listen address (default: webhook.host)")
    p.add_argument("--port", type=int, help="listen port (default: webhook.port)")
    p.set_defaults(handler=cmd_webhook)


def cmd_webhook(args: argparse.Namespace, config: Config) -> int:
    overrides: dict[str, Any] = {"enabled": True}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    config = with_overrides(config, webhook=overrides)
    check_webhook_config(config)
    configure_logging(config.logging.format, config.logging.level, stream=sys.stdout)
    with database_dsn(config.database) as dsn:
        if not config.database.url:
            from daemon.cli import ensure_embedded_schema

            ensure_embedded_schema(dsn)
        return eventloop.run(run_webhook(config, dsn), config.runtime.event_loop)


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
        reconciler = Reconciler(pool, config.webhook)
        for name, coro in reconciler_tasks(reconciler, dsn).items():
            tasks.start(name, coro)
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
