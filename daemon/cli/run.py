"""`wa-sender run`: the daemon."""

from __future__ import annotations

import argparse
import sys

from daemon.cli.common import Commands, ensure_embedded_schema
from daemon.config import Config
from daemon.db.database import database_dsn
from daemon.logs import configure_logging


def add_parser(commands: Commands) -> None:
    """Register `run`."""
    p = commands.add_parser(
        "run", help="the daemon: sender, receipts webhook, reconciler, metrics (until SIGTERM)"
    )
    p.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """`run`: the daemon until SIGTERM (the embedded database migrates itself)."""
    # The engine only for the commands that run it: every other command starts faster.
    from daemon.engine import eventloop
    from daemon.engine.service import check_config_for_run, default_components, run_daemon

    check_config_for_run(config)
    configure_logging(config.logging.format, config.logging.level, stream=sys.stdout)
    with database_dsn(config.database) as dsn:
        if not config.database.url:
            ensure_embedded_schema(dsn)
        return eventloop.run(
            run_daemon(config, dsn, components=default_components(config)),
            config.runtime.event_loop,
        )
