"""`wa-sender report NAME`: a SQL report from sql/reports/."""

from __future__ import annotations

import argparse

import asyncpg

from daemon.cli.common import Commands, positive_int, with_connection
from daemon.config import Config
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
    p.add_argument("--campaign", type=positive_int, metavar="ID", help="default: every campaign")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    """`report NAME`: run a SQL report and print it in the chosen format."""
    report_text(args.name)  # an unknown name fails before connecting

    async def work(conn: asyncpg.Connection) -> int:
        result = await run_report(conn, args.name, args.campaign)
        print(render(result, args.format))
        return 0

    return with_connection(config, work)
