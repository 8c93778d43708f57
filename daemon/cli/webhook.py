"""`wa-sender webhook`: the receipts webhook server and the reconciler alone, without the
sender, to scale receipt intake out over several processes or hosts (one database)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli.common import Commands, ensure_embedded_schema
from daemon.config import Config, with_overrides
from daemon.db.database import database_dsn
from daemon.logs import configure_logging


def add_parser(commands: Commands) -> None:
    """Register `webhook`."""
    p = commands.add_parser(
        "webhook",
        help="the receipts webhook server and reconciler alone, to scale out (until SIGTERM)",
    )
    p.add_argument("--host", help="listen address (default: webhook.host)")
    p.add_argument("--port", type=int, help="listen port (default: webhook.port)")
    p.set_defaults(handler=cmd_webhook)


def cmd_webhook(args: argparse.Namespace, config: Config) -> int:
    """`webhook`: the webhook server and reconciler alone, on --host/--port."""
    from daemon.engine import eventloop  # the engine only for the commands that run it
    from daemon.engine.service import run_webhook
    from daemon.engine.web import check_webhook_config

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
            ensure_embedded_schema(dsn)
        return eventloop.run(run_webhook(config, dsn), config.runtime.event_loop)
