"""`wa-sender campaign create|list|status|start|pause|resume|cancel`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

import asyncpg

from daemon.cli.common import Commands, Handler, positive_int, with_connection
from daemon.cli.templates import read_template_file
from daemon.config import Config
from daemon.core.states import CampaignCommand
from daemon.core.template_spec import TemplateSource
from daemon.db import campaigns as store
from daemon.errors import ConfigError
from daemon.ops.create import CampaignRequest, create_campaign_from_request
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
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a campaign constant for one of the template's values, the same for every"
        " contact (keys: `wa-sender templates show NAME`), e.g. header.image.link=https://...",
    )
    p.add_argument(
        "--param-type",
        dest="param_types",
        action="append",
        type=_key_value,
        default=[],
        metavar="VARIABLE=TYPE",
        help="send a body variable as currency or date_time instead of text",
    )
    p.add_argument(
        "--header-file",
        type=Path,
        metavar="FILE",
        help="the header's image, video or document; the daemon uploads it once per sending"
        " number (POST /{phone_number_id}/media) and again before its id expires",
    )
    p.add_argument(
        "--template-file",
        type=Path,
        metavar="JSON",
        help="take the template from this file (Meta's message_templates shape): offline use",
    )
    p.add_argument(
        "--message-send-ttl-seconds",
        type=int,
        default=None,
        help="Marketing Messages API: how long Meta tries to deliver (43200..2592000)",
    )
    p.add_argument(
        "--product-policy",
        choices=("CLOUD_API_FALLBACK", "STRICT"),
        default=None,
        help="Marketing Messages API product policy",
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


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def cmd_campaign_create(args: argparse.Namespace, config: Config) -> int:
    """`campaign create`: a draft campaign; prints its id. The template comes from the
    catalogue (checked: known, in that language, APPROVED), a `--template-file`, or, with
    no catalogue at all, by name only (unverified, today's `--param` campaigns)."""
    phone_number_id = args.phone_number_id or config.whatsapp.phone_number_id
    if not phone_number_id:
        raise ConfigError(
            "no sending phone number: pass --phone-number-id or set whatsapp.phone_number_id"
        )
    sets = dict(args.sets)
    if len(sets) != len(args.sets):
        raise ConfigError("a --set key is given twice")
    request = CampaignRequest(
        name=args.name,
        template=args.template,
        language=args.language,
        phone_number_id=phone_number_id,
        params=tuple(args.param or ()),
        sets=sets,
        param_types=dict(args.param_types),
        header_file=args.header_file,
        template_file=read_template_file(args.template_file) if args.template_file else None,
        message_send_ttl_seconds=args.message_send_ttl_seconds,
        product_policy=args.product_policy,
    )

    async def work(conn: asyncpg.Connection) -> int:
        created = await create_campaign_from_request(conn, request, config.whatsapp.waba_id)
        if created.source is TemplateSource.UNVERIFIED:
            print(
                f"wa-sender: note: template {args.template} ({args.language}) is unverified:"
                " no template catalogue (set whatsapp.waba_id and run `wa-sender templates"
                " sync`, or pass --template-file)",
                file=sys.stderr,
            )
        print(created.campaign_id)
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
