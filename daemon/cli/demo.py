"""`wa-sender demo`: an end-to-end campaign on a throwaway PostgreSQL and the local mock API."""

from __future__ import annotations

import argparse

from daemon.cli.common import Commands, ensure_embedded_schema
from daemon.config import Config
from daemon.core.windows import WindowError, parse_window
from daemon.db.database import database_dsn
from daemon.errors import ConfigError, UsageError


def add_parser(commands: Commands) -> None:
    """Register `demo`."""
    p = commands.add_parser(
        "demo",
        help="an end-to-end campaign on a throwaway PostgreSQL and the local mock API",
    )
    p.add_argument("--contacts", type=int, default=2000, help="generated contacts (default 2000)")
    p.add_argument("--rate", type=float, default=400.0, help="messages per second (default 400)")
    p.add_argument(
        "--window",
        default=None,
        metavar="SPEC",
        help="the demo campaign's send window in the recipients' local time (e.g. 'Mon-Fri"
        " 09:00-20:00'); contacts outside theirs wait, and the demo ends saying so",
    )
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    """`demo`: a generated campaign sent end to end to the local mock API."""
    from daemon.ops.demo import main_demo  # the mock API and the daemon: only for the demo

    if args.contacts < 0 or args.rate <= 0:
        raise ConfigError("--contacts must be 0 or more and --rate above 0")
    if args.window is not None:
        try:
            parse_window(args.window)
        except WindowError as exc:
            raise UsageError(f"--window: {exc}") from None
    with database_dsn(config.database, throwaway=True) as dsn:
        if config.database.url:
            print("using DATABASE_URL (a demo campaign will be created there)")
        ensure_embedded_schema(dsn)
        return main_demo(config, dsn, args.contacts, args.rate, window=args.window)
