"""`wa-sender campaign create|list|status|start|pause|resume|cancel`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

import asyncpg

from daemon.cli.common import Commands, Handler, positive_int, with_connection
from daemon.config import Config
from daemon.core.payload import Template
from daemon.core.states import CampaignCommand
from daemon.db import campaigns as store
from daemon.errors import ConfigError
from daemon.ops.render import campaign_dict, campaign_line, progress_dict, progress_table
from daemon.ops.watch import watch

EXIT_INTERRUPTED = 130


def add_parser(commands: Commands) -> None:
    """Register `campaign` and its actions."""
    campaign = commands.add_parser("campaign", help="create, list, inspect and steer campaigns")
    sub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    p = sub.add_parser("create", help="create a draft campaign and print its id")
    p.add_argument("--name", required=True)
    p.add_argument("--template", required=True, help="approved template name")
    p.add_argument("--language", required=True, help="template language code, e.g. en_US")
    p.add_argument(
        "--param", action="append", metavar="COL", help="body parameter column, in order"
    )
    p.add_argument(
        "--phone-number-id", help="sending phone number id (default: whatsapp.phone_number_id)"
    )
    p.set_defaults(handler=cmd_campaign_create)
    p = sub.add_parser("list", help="list campaigns")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_campaign_list)
    p = sub.add_parser("status", help="per-state counts with labels and progress")
    p.add_argument("id", type=positive_int)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--watch", action="store_true", help="refresh counts, rate and ETA until the campaign ends"
    )
    p.set_defaults(handler=cmd_campaign_status)
    for command in (
        CampaignCommand.START,
        CampaignCommand.PAUSE,
        CampaignCommand.RESUME,
        CampaignCommand.CANCEL,
    ):
        p = sub.add_parser(command.value, help=f"{command.value} a campaign")
        p.add_argument("id", type=positive_int)
        p.set_defaults(handler=_lifecycle(command))


def cmd_campaign_create(args: argparse.Namespace, config: Config) -> int:
    """`campaign create`: a draft campaign; prints its id."""
    phone_number_id = args.phone_number_id or config.whatsapp.phone_number_id
    if not phone_number_id:
        raise ConfigError(
            "no sending phone number: pass --phone-number-id or set whatsapp.phone_number_id"
        )
    params = tuple(args.param or ())
    if len(set(params)) != len(params):
        raise ConfigError("a --param column is named twice")
    template = Template(args.template, args.language, params)

    async def work(conn: asyncpg.Connection) -> int:
        campaign_id = await store.create_campaign(conn, args.name, template, phone_number_id)
        print(campaign_id)
        return 0

    return with_connection(config, work)


def cmd_campaign_list(args: argparse.Namespace, config: Config) -> int:
    """`campaign list`: one line per campaign, or JSON."""

    async def work(conn: asyncpg.Connection) -> int:
        found = await store.list_campaigns(conn)
        if args.json:
            print(json.dumps([campaign_dict(c) for c in found], indent=2))
        elif not found:
            print("no campaigns")
        else:
            for c in found:
                print(campaign_line(c))
        return 0

    return with_connection(config, work)


def cmd_campaign_status(args: argparse.Namespace, config: Config) -> int:
    """`campaign status ID`: the per-state table (or JSON), or `--watch` it live."""
    if args.watch:
        if args.json:
            raise ConfigError("--watch and --json cannot be combined")
        return watch_campaign(config, args.id)

    async def work(conn: asyncpg.Connection) -> int:
        progress = await store.campaign_progress(conn, args.id)
        print(
            json.dumps(progress_dict(progress), indent=2) if args.json else progress_table(progress)
        )
        return 0

    return with_connection(config, work)


def _lifecycle(command: CampaignCommand) -> Handler:
    def handler(args: argparse.Namespace, config: Config) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            campaign = await store.change_campaign_state(conn, args.id, command)
            print(f"campaign {campaign.id} is {campaign.state.value}")
            return 0

        return with_connection(config, work)

    return handler


def watch_campaign(
    config: Config, campaign_id: int, *, interval_s: float = 1.0, out: TextIO | None = None
) -> int:
    """The `campaign status ID --watch` command: 0 once the campaign is over, 130 on Ctrl-C.
    `out` defaults to sys.stdout."""
    stream = sys.stdout if out is None else out

    async def work(conn: asyncpg.Connection) -> int:
        await watch(conn, campaign_id, interval_s=interval_s, out=stream)
        return 0

    try:
        return with_connection(config, work)
    except KeyboardInterrupt:
        stream.write("\n")
        stream.flush()
        return EXIT_INTERRUPTED
