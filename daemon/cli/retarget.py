"""`wa-sender campaign retarget|delete` (registered by `cli.campaign`)."""

from __future__ import annotations

import argparse

import asyncpg

from daemon.cli.common import Commands, positive_int, print_json, with_connection
from daemon.cli.contacts import states_arg
from daemon.config import Config
from daemon.ops.retarget import delete_campaign, retarget


def add_actions(sub: Commands) -> None:
    """Add `retarget` and `delete` to `campaign`'s actions."""
    p = sub.add_parser(
        "retarget",
        help="a new draft campaign of this one's contacts in some states (e.g. to retry them)",
        description="Create a draft campaign with the same template, values and sending number,"
        " holding this campaign's contacts in the given states as Initial, with their stored"
        " parameters; suppressed phones are left out and counted.",
    )
    p.add_argument("id", type=positive_int, help="the campaign to take contacts from")
    p.add_argument(
        "--states",
        required=True,
        type=states_arg,
        metavar="S,...",
        help="contact states to take, e.g. error,delivery_failed,sending_failed",
    )
    p.add_argument("--name", help="the new campaign's name (default: '<name> (retarget)')")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_campaign_retarget)
    p = sub.add_parser("delete", help="remove a draft campaign and its contacts")
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_campaign_delete)


def cmd_campaign_retarget(args: argparse.Namespace, config: Config) -> int:
    """`campaign retarget ID --states S,...`: prints the new campaign's id and counts."""

    async def work(conn: asyncpg.Connection) -> int:
        r = await retarget(
            conn,
            args.id,
            args.states,
            args.name,
            block_us_marketing=config.imports.block_us_marketing,
        )
        if args.json:
            print_json(
                {
                    "campaign_id": r.campaign_id,
                    "retargeted_from": r.source_id,
                    "contacts": r.copied,
                    "suppressed": r.suppressed,
                    "marketing_blocked_country": r.blocked,
                }
            )
        else:
            print(r.campaign_id)
            print(
                f"draft campaign {r.campaign_id}: {r.copied} contacts from campaign {r.source_id}"
                f" ({r.suppressed} suppressed phones left out"
                + (f", {r.blocked} US numbers blocked for marketing" if r.blocked else "")
                + ")"
            )
        return 0

    return with_connection(config, work)


def cmd_campaign_delete(args: argparse.Namespace, config: Config) -> int:
    """`campaign delete ID`: a draft campaign only."""

    async def work(conn: asyncpg.Connection) -> int:
        await delete_campaign(conn, args.id)
        if args.json:
            print_json({"deleted": args.id})
        else:
            print(f"deleted campaign {args.id}")
        return 0

    return with_connection(config, work)
