"""`wa-sender gdpr purge|forget`: personal data, anonymised or forgotten."""

from __future__ import annotations

import argparse
import dataclasses

import asyncpg

from daemon.cli.common import (
    Commands,
    add_country_option,
    days,
    default_country,
    parse_phone,
    print_json,
    with_connection,
)
from daemon.config import Config
from daemon.ops import gdpr


def add_parser(commands: Commands) -> None:
    """Register `gdpr` and its actions."""
    p = commands.add_parser("gdpr", help="personal data: anonymise old campaigns, forget a person")
    sub = p.add_subparsers(dest="gdpr_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "purge",
        help="anonymise the contacts of campaigns finished or canceled more than DAYS days ago",
        description="Anonymise the contacts (phone, wa_id, wamid, template parameters) of "
        "campaigns finished or canceled more than DAYS days ago, and scrub their status "
        "receipts. States, timestamps and error codes stay: reports keep their counts.",
    )
    p.add_argument(
        "--older-than",
        type=days,
        required=True,
        metavar="DAYS",
        help="campaigns finished or canceled more than DAYS days ago",
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_gdpr_purge)
    p = sub.add_parser(
        "forget",
        help="remove one person from every campaign and receipt; suppress the number",
        description="Anonymise every contact with this phone number in every campaign "
        "(contacts not sent yet are removed), scrub its status receipts, and add the number to "
        "the suppression list (reason 'gdpr forget'), the one place it is kept, so that it is "
        "never messaged again.",
    )
    p.add_argument("phone", metavar="PHONE", help="the person's phone number")
    add_country_option(p, "a number")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_gdpr_forget)


def cmd_gdpr_purge(args: argparse.Namespace, config: Config) -> int:
    """`gdpr purge --older-than DAYS`: anonymise the contacts of old campaigns."""

    async def work(conn: asyncpg.Connection) -> int:
        r = await gdpr.purge(conn, args.older_than)
        if args.json:
            print_json({"older_than_days": args.older_than, **dataclasses.asdict(r)})
            return 0
        print(
            f"anonymised {r.contacts} contacts in {r.campaigns} campaigns finished or canceled "
            f"more than {args.older_than} days ago; scrubbed {r.receipts} status receipts and "
            f"{r.window_entries} messaging-limit entries"
        )
        return 0

    return with_connection(config, work)


def cmd_gdpr_forget(args: argparse.Namespace, config: Config) -> int:
    """`gdpr forget PHONE`: anonymise a person everywhere and suppress the number."""
    phone = parse_phone(args.phone, default_country(args, config))

    async def work(conn: asyncpg.Connection) -> int:
        r = await gdpr.forget(conn, phone)
        if args.json:
            print_json(dataclasses.asdict(r))
            return 0
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
