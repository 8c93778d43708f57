"""`wa-sender suppression add|remove|list`: the opt-out list."""

from __future__ import annotations

import argparse
import json

import asyncpg

from daemon.cli.common import (
    Commands,
    add_country_option,
    phone_arg,
    phones_of,
    print_json,
    with_connection,
)
from daemon.config import Config
from daemon.db import campaigns as store
from daemon.ops.render import printable


def add_parser(commands: Commands) -> None:
    """Register `suppression` and its actions."""
    suppression = commands.add_parser("suppression", help="the opt-out list")
    sub = suppression.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("add", help="never send to these phones")
    p.add_argument("phones", nargs="+", type=phone_arg, metavar="PHONE", help="phone numbers")
    p.add_argument("--reason", default="opt-out", help="why (default: opt-out)")
    add_country_option(p, "numbers")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_suppression)
    p = sub.add_parser("remove", help="allow these phones again")
    p.add_argument("phones", nargs="+", type=phone_arg, metavar="PHONE", help="phone numbers")
    add_country_option(p, "numbers")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_suppression)
    p = sub.add_parser("list", help="list suppressed phones")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(handler=cmd_suppression)


def cmd_suppression(args: argparse.Namespace, config: Config) -> int:
    """`suppression add|remove|list`."""

    phones = phones_of(args, config) if args.action in ("add", "remove") else []

    async def work(conn: asyncpg.Connection) -> int:
        if args.action == "add":
            added = [p for p in phones if await store.add_suppression(conn, p, args.reason)]
            if args.json:
                print_json({"added": len(added), "already_listed": len(phones) - len(added)})
            else:
                print(f"added {len(added)} (already listed: {len(phones) - len(added)})")
        elif args.action == "remove":
            gone = [p for p in phones if await store.remove_suppression(conn, p)]
            if args.json:
                print_json({"removed": len(gone), "not_listed": len(phones) - len(gone)})
            else:
                print(f"removed {len(gone)} (not listed: {len(phones) - len(gone)})")
        else:
            rows = await store.list_suppressions(conn)
            if args.json:
                print(
                    json.dumps(
                        [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]
                    )
                )
            else:
                for r in rows:
                    reason = printable(r["reason"])
                    scope = "" if r["scope"] == "all" else f"  ({r['scope']} only)"
                    print(
                        f"{r['phone']}  {reason}  source={r['source']}{scope}"
                        f"  {r['created_at']:%Y-%m-%d %H:%M}"
                    )
        return 0

    return with_connection(config, work)
