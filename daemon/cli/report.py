"""`wa-sender report` and `wa-sender gdpr purge|forget`."""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from daemon.cli.main import with_connection
from daemon.config import Config
from daemon.core.phones import InvalidPhone, normalize_phone
from daemon.errors import WaSenderError
from daemon.ops import gdpr
from daemon.ops.reports import FORMATS, available_reports, render, report_text, run_report


def add_parser(commands: Any) -> None:
    names = ", ".join(available_reports())
    p = commands.add_parser(
        "report",
        help="run a SQL report from sql/reports/",
        description=f"Run sql/reports/NAME.sql. Reports: {names}.",
    )
    p.add_argument("name", metavar="NAME", help=f"one of: {names}")
    p.add_argument("--campaign", type=_positive_int, metavar="ID", help="default: every campaign")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(handler=cmd_report)

    p = commands.add_parser("gdpr", help="personal data: anonymise old campaigns, forget a person")
    sub = p.add_subparsers(dest="gdpr_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "purge",
        help="anonymise the contacts of campaigns finished or canceled more than DAYS days ago",
        description="Anonymise the contacts (phone, wa_id, wamid, template parameters) of "
        "campaigns finished or canceled more than DAYS days ago, and scrub their status "
        "receipts. States, timestamps and error codes stay: reports keep their counts.",
    )
    p.add_argument("--older-than", type=_days, required=True, metavar="DAYS")
    p.set_defaults(handler=cmd_gdpr_purge)
    p = sub.add_parser(
        "forget",
        help="remove one person from every campaign and receipt; suppress the number",
        description="Anonymise every contact with this phone number in every campaign "
        "(contacts not sent yet are removed), scrub its status receipts, and add the number to "
        "the suppression list (reason 'gdpr forget'), the one place it is kept, so that it is "
        "never messaged again.",
    )
    p.add_argument("phone", metavar="PHONE")
    p.set_defaults(handler=cmd_gdpr_forget)


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    report_text(args.name)  # an unknown name fails before connecting

    async def work(conn: asyncpg.Connection) -> int:
        result = await run_report(conn, args.name, args.campaign)
        print(render(result, args.format))
        return 0

    return with_connection(config, work)


def cmd_gdpr_purge(args: argparse.Namespace, config: Config) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        r = await gdpr.purge(conn, args.older_than)
        print(
            f"anonymised {r.contacts} contacts in {r.campaigns} campaigns finished or canceled "
            f"more than {args.older_than} days ago; scrubbed {r.receipts} status receipts and "
            f"{r.window_entries} messaging-limit entries"
        )
        return 0

    return with_connection(config, work)


def cmd_gdpr_forget(args: argparse.Namespace, config: Config) -> int:
    try:
        phone = normalize_phone(args.phone)
    except InvalidPhone as exc:
        raise WaSenderError(f"invalid phone {args.phone!r}: {exc.reason}") from None

    async def work(conn: asyncpg.Connection) -> int:
        r = await gdpr.forget(conn, phone)
        listed = (
            f"added to the suppression list (reason {gdpr.FORGET_REASON!r})"
            if r.suppression_added
            else "already on the suppression list"
        )
        print(
            f"anonymised {r.contacts} contacts ({r.removed} not yet sent, now removed); "
            f"scrubbed {r.receipts} status receipts and {r.window_entries} messaging-limit "
            f"entries; number {listed}"
        )
        return 0

    return with_connection(config, work)


def _positive_int(raw: str) -> int:
    value = _whole_number(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {raw!r}")
    return value


def _days(raw: str) -> int:
    value = _whole_number(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more days, got {raw!r}")
    return value


def _whole_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
