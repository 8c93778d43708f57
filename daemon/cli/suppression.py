"""`wa-sender suppression add|remove|list`: the opt-out list."""

from __future__ import annotations

import argparse
import json

import asyncpg

from daemon.cli.common import Commands, phone_arg, with_connection
from daemon.config import Config
from daemon.db import campaigns as store


def add_parser(commands: Commands) -> None:
    """Register `suppression` and its actions."""
    suppression = commands.add_parser("suppression", help="the opt-out list")
    sub = suppression.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("add", help="never send to these phones")
    p.add_argument("phones", nargs="+", type=phone_arg, metavar="PHONE")
    p.add_argument("--reason", default="opt-out")
    p.set_defaults(handler=cmd_suppression)
    p = sub.add_parser("remove", help="allow these phones again")
    p.add_argument("phones", nargs="+", type=phone_arg, metavar="PHONE")
    p.set_defaults(handler=cmd_suppression)
    p = sub.add_parser("list", help="list suppressed phones")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_suppression)


def cmd_suppression(args: argparse.Namespace, config: Config) -> int:
    """`suppression add|remove|list`."""

    async def work(conn: asyncpg.Connection) -> int:
        if args.action == "add":
            added = [p for p in args.phones if await store.add_suppression(conn, p, args.reason)]
            print(f"added {len(added)} (already listed: {len(args.phones) - len(added)})")
        elif args.action == "remove":
            gone = [p for p in args.phones if await store.remove_suppression(conn, p)]
            print(f"removed {len(gone)} (not listed: {len(args.phones) - len(gone)})")
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
                    print(f"{r['phone']}  {r['reason']}  {r['created_at']:%Y-%m-%d %H:%M}")
        return 0

    return with_connection(config, work)
