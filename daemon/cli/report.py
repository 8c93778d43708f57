"""`wa-sender report NAME`: a SQL report from sql/reports/."""

from __future__ import annotations

import argparse

import asyncpg

from daemon.cli.common import Commands, positive_int, with_connection
from daemon.config import Config
from daemon.errors import UsageError
from daemon.ops.reports import FORMATS, available_reports, render, report_text, run_report


def add_parser(commands: Commands) -> None:
    """Register `report`."""
    names = ", ".join(available_reports())
    p = commands.add_parser(
        "report",
        help="run a SQL report from sql/reports/",
        description=f"Run sql/reports/NAME.sql. Reports: {names}.",
    )
    p.add_argument("name", metavar="NAME", help=f"one of: {names}")
    p.add_argument(
        "id", nargs="?", type=positive_int, metavar="ID", help="campaign id (default: every one)"
    )
    p.add_argument(
        "--campaign",
        type=positive_int,
        metavar="ID",
        dest="campaign_option",
        help="the same as ID (kept for scripts)",
    )
    p.add_argument(
        "--format", choices=FORMATS, default="table", help="table (default), csv or json"
    )
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    """`report NAME`: run a SQL report and print it in the chosen format."""
    report_text(args.name)  # an unknown name fails before connecting
    if args.id is not None and args.campaign_option is not None and args.id != args.campaign_option:
        raise UsageError(f"two campaign ids: {args.id} and --campaign {args.campaign_option}")
    campaign_id = args.id if args.id is not None else args.campaign_option

    async def work(conn: asyncpg.Connection) -> int:
        result = await run_report(conn, args.name, campaign_id)
        print(render(result, args.format))
        return 0

    return with_connection(config, work)
