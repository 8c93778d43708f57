"""`wa-sender run`: the daemon."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli.common import ensure_embedded_schema
from daemon.config import Config
from daemon.db.database import database_dsn
from daemon.engine import eventloop
from daemon.engine.service import check_config_for_run, default_components, run_daemon
from daemon.logs import configure_logging


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "run", help="the daemon: sender, receipts webhook, reconciler, metrics (until SIGTERM)"
    )
    p.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    check_config_for_run(config)
    configure_logging(config.logging.format, config.logging.level, stream=sys.stdout)
    with database_dsn(config.database) as dsn:
        if not config.database.url:
            ensure_embedded_schema(dsn)
        return eventloop.run(
            run_daemon(config, dsn, components=default_components(config)),
            config.runtime.event_loop,
        )


def add_demo_parser(commands: Any) -> None:
    p = commands.add_parser(
        "demo",
        help="an end-to-end campaign on a throwaway PostgreSQL and the local mock API",
    )
    p.add_argument("--contacts", type=int, default=2000, help="generated contacts (default 2000)")
    p.add_argument("--rate", type=float, default=400.0, help="messages per second (default 400)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from daemon.ops.demo import main_demo

    if args.contacts < 0 or args.rate <= 0:
        from daemon.errors import ConfigError

        raise ConfigError("--contacts must be 0 or more and --rate above 0")
    with database_dsn(config.database, throwaway=True) as dsn:
        if config.database.url:
            print("using DATABASE_URL (a demo campaign will be created there)")
        ensure_embedded_schema(dsn)
        return main_demo(config, dsn, args.contacts, args.rate)
