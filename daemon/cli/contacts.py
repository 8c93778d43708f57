"""`wa-sender contacts import|remove`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import asyncpg

from daemon.cli.common import Commands, phone_arg, positive_int, print_json, with_connection
from daemon.config import Config
from daemon.db import campaigns as store
from daemon.db.importer import import_contacts


def add_parser(commands: Commands) -> None:
    """Register `contacts` and its actions."""
    contacts = commands.add_parser("contacts", help="import or remove contacts")
    sub = contacts.add_subparsers(dest="contacts_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "import", help="load a CSV (header 'phone' or 'Guest phone number' + parameter columns)"
    )
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument("file", help="the CSV file")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_contacts_import)
    p = sub.add_parser("remove", help="remove contacts (campaign draft or paused only)")
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument(
        "phones", nargs="+", type=phone_arg, metavar="PHONE", help="phone numbers to remove"
    )
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(handler=cmd_contacts_remove)


def cmd_contacts_import(args: argparse.Namespace, config: Config) -> int:
    """`contacts import ID FILE`: load a CSV; prints what was imported and why rows were not."""

    async def work(conn: asyncpg.Connection) -> int:
        result = await import_contacts(conn, args.id, Path(args.file))
        if args.json:
            document: dict[str, object] = {
                "campaign_id": result.campaign_id,
                "rows": result.rows,
                "imported": result.imported,
                "invalid": result.invalid,
                "reasons": result.reasons,
            }
            if result.notes:  # e.g. {"language_fallback": n}
                document["notes"] = result.notes
            print(json.dumps(document))
        else:
            print(f"imported {result.imported}, invalid {result.invalid} (of {result.rows} rows)")
            for reason, n in sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"  {reason}: {n}")
            fallback = result.notes.get("language_fallback")
            if fallback:
                print(
                    f"  language_fallback: {fallback} contact(s) in a language the template"
                    " lacks get the campaign's"
                )
        return 0

    return with_connection(config, work)


def cmd_contacts_remove(args: argparse.Namespace, config: Config) -> int:
    """`contacts remove ID PHONE...`: exit code 1 when a phone could not be removed."""

    async def work(conn: asyncpg.Connection) -> int:
        removed, not_removed = await store.remove_contacts(conn, args.id, args.phones)
        if args.json:
            print_json(
                {
                    "campaign_id": args.id,
                    "removed": len(removed),
                    "not_removed": not_removed,
                }
            )
        else:
            print(f"removed {len(removed)}")
            for phone, why in not_removed.items():
                print(f"  not removed {phone}: {why}")
        return 0 if not not_removed else 1

    return with_connection(config, work)
