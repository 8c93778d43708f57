"""`wa-sender db url|psql|serve|stop`: the database from outside wa-sender (the embedded one
included), for psql and the SQL reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.cli.common import Commands
from daemon.config import Config
from daemon.db.database import database_dsn
from daemon.errors import WaSenderError
from daemon.ops import dbaccess


def add_parser(commands: Commands) -> None:
    """Register `db` and its actions."""
    db = commands.add_parser(
        "db",
        help="the database's DSN, psql on it (the embedded one too)",
        description="With DATABASE_URL (or database.url) these use that server. Without, the "
        "embedded PostgreSQL on database.embedded_dir: `url` starts it when it is not running "
        f"(a keeper holds it up until {dbaccess.KEEPER_IDLE_S:.0f} s pass without a client, "
        "or `db stop`), `psql` holds it up for as long as psql runs.",
    )
    sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "url",
        help="print a DSN for psql (starting the embedded server if needed)",
        description='E.g. psql "$(wa-sender db url)" -v campaign_id=3 -f '
        "sql/reports/delivery_funnel.sql",
    )
    p.set_defaults(handler=cmd_db_url)
    p = sub.add_parser(
        "psql",
        help="open psql on the database; arguments after -- go to psql",
        description="E.g. wa-sender db psql -- -v campaign_id=3 -f sql/reports/latency.sql",
    )
    p.add_argument(
        "psql_args", nargs=argparse.REMAINDER, metavar="-- PSQL_ARGS", help="passed to psql"
    )
    p.set_defaults(handler=cmd_db_psql)
    p = sub.add_parser(
        "serve",
        help="run the embedded server in the foreground (what `db url` starts)",
    )
    p.add_argument(
        "--data-dir", help="data directory (default: database.embedded_dir or the state dir)"
    )
    p.add_argument(
        "--idle-exit",
        type=float,
        default=dbaccess.KEEPER_IDLE_S,
        metavar="SECONDS",
        help="stop after this long without a client connection "
        f"(default {dbaccess.KEEPER_IDLE_S:.0f})",
    )
    p.set_defaults(handler=cmd_db_serve)
    p = sub.add_parser("stop", help="stop the embedded server that `db url` started")
    p.set_defaults(handler=cmd_db_stop)


def cmd_db_url(args: argparse.Namespace, config: Config) -> int:
    """`db url`: the configured URL, or the embedded server's DSN (started if needed)."""
    if config.database.url:
        print(config.database.url)
        return 0
    config_file = args.config if getattr(args, "config_explicit", False) else None
    print(dbaccess.embedded_url(config.database, config_file=config_file))
    return 0


def cmd_db_psql(args: argparse.Namespace, config: Config) -> int:
    """`db psql [-- ARGS]`: psql's exit code."""
    psql_args = list(args.psql_args)
    if psql_args[:1] == ["--"]:
        psql_args = psql_args[1:]
    if dbaccess.find_psql() is None:
        raise WaSenderError(dbaccess.PSQL_MISSING)
    with database_dsn(config.database) as dsn:
        if not config.database.url:
            dbaccess.migrate(dsn)
        return dbaccess.run_psql(dsn, psql_args)


def cmd_db_serve(args: argparse.Namespace, config: Config) -> int:
    """`db serve`: the embedded server in the foreground until SIGTERM or idle."""
    data = Path(args.data_dir).resolve() if args.data_dir else dbaccess.data_dir(config.database)
    return dbaccess.serve(data, args.idle_exit)


def cmd_db_stop(args: argparse.Namespace, config: Config) -> int:
    """`db stop`: stop the keeper's server; says what it did."""
    print(dbaccess.stop_keeper(config.database))
    return 0
