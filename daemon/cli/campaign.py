"""`wa-sender campaign create|list|status|start|pause|resume|cancel`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from daemon.cli import cost as cost_cli
from daemon.cli import planning as planning_cli
from daemon.cli import retarget as retarget_cli
from daemon.cli.common import (
    Commands,
    Handler,
    add_country_option,
    phone_number_id_arg,
    positive_int,
    print_json,
    with_connection,
)
from daemon.cli.templates import read_template_file
from daemon.config import Config
from daemon.core.states import CampaignCommand, CampaignState
from daemon.core.template_spec import TemplateSource
from daemon.db import campaigns as store
from daemon.errors import EXIT_INTERRUPTED, UsageError
from daemon.ops.create import CampaignRequest, create_campaign_from_request
from daemon.ops.lifecycle import LIVE_WITHIN_S, LifecycleResult, change_state, live_daemon_count
from daemon.ops.planning import check_start_at
from daemon.ops.render import (
    campaign_dict,
    campaign_line,
    printable,
    progress_dict,
    progress_table,
    utc_text,
)
from daemon.ops.watch import watch

NO_DAEMON_WARNING = (
    f"warning: no daemon has heartbeated in the last {LIVE_WITHIN_S:.0f} s: nothing is sent "
    "until `wa-sender run` is running (see `wa-sender daemons`)"
)
QUIET_STATES = frozenset({CampaignState.FINISHED, CampaignState.CANCELED})


def add_parser(commands: Commands) -> None:
    """Register `campaign` and its actions."""
    campaign = commands.add_parser("campaign", help="create, list, inspect and steer campaigns")
    sub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    p = sub.add_parser("create", help="create a draft campaign and print its id")
    p.add_argument("--name", required=True, help="the campaign's name, shown in lists")
    p.add_argument("--template", required=True, help="approved template name")
    p.add_argument("--language", required=True, help="template language code, e.g. en_US")
    p.add_argument(
        "--param", action="append", metavar="COL", help="body parameter column, in order"
    )
    p.add_argument(
        "--phone-number-id",
        type=phone_number_id_arg,
        help="sending phone number id, digits (default: whatsapp.phone_number_id)",
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
    add_country_option(p, "the numbers of its imports")
    planning_cli.add_planning_options(p)
    cost_cli.add_cost_options(p)
    p.add_argument("--json", action="store_true", help="print the new campaign as JSON")
    p.set_defaults(handler=cmd_campaign_create)
    p = sub.add_parser("list", help="list campaigns")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(handler=cmd_campaign_list)
    p = sub.add_parser("status", help="per-state counts with labels and progress")
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument(
        "--watch", action="store_true", help="refresh counts, rate and ETA until the campaign ends"
    )
    p.set_defaults(handler=cmd_campaign_status)
    helps = {
        CampaignCommand.START: "start sending a draft or scheduled campaign now, or --at a time",
        CampaignCommand.PAUSE: "stop sending now; returns once no message can leave any daemon",
        CampaignCommand.RESUME: "send a paused campaign again (a running one: nothing to do)",
        CampaignCommand.CANCEL: "stop for good: returns once no message can leave any daemon "
        "and every contact not sent is Canceled by admin",
    }
    for command, text in helps.items():
        p = sub.add_parser(command.value, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("id", type=positive_int, help="campaign id")
        if command is CampaignCommand.START:
            p.add_argument(
                "--at",
                metavar="TIME",
                help="schedule it instead: state scheduled until this ISO 8601 time (without an"
                " offset: planning.time_zone), when a daemon starts it",
            )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(handler=_lifecycle(command))
    planning_cli.add_actions(sub)
    retarget_cli.add_actions(sub)
    cost_cli.add_actions(sub)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def _require_text(flag: str, value: str) -> str:
    text = value.strip()
    if not text:
        raise UsageError(f"{flag} must not be empty")
    return text


def cmd_campaign_create(args: argparse.Namespace, config: Config) -> int:
    """`campaign create`: a draft campaign; prints its id (input checked before the
    database). The template comes from the catalogue (checked: known, in that language,
    APPROVED), a `--template-file`, or, with no catalogue at all, by name only (unverified,
    today's `--param` campaigns)."""
    name = _require_text("--name", args.name)
    template_name = _require_text("--template", args.template)
    language = _require_text("--language", args.language)
    phone_number_id = args.phone_number_id or config.whatsapp.phone_number_id
    if not phone_number_id:
        raise UsageError(
            "no sending phone number: pass --phone-number-id or set whatsapp.phone_number_id"
        )
    params = tuple(_require_text("--param", p) for p in args.param or ())
    if len(set(params)) != len(params):
        raise UsageError("a --param column is named twice")
    sets = dict(args.sets)
    if len(sets) != len(args.sets):
        raise UsageError("a --set key is given twice")
    request = CampaignRequest(
        name=name,
        template=template_name,
        language=language,
        phone_number_id=phone_number_id,
        params=params,
        sets=sets,
        param_types=dict(args.param_types),
        header_file=args.header_file,
        template_file=read_template_file(args.template_file) if args.template_file else None,
        message_send_ttl_seconds=args.message_send_ttl_seconds,
        product_policy=args.product_policy,
        default_country=args.default_country,
    )
    planning = planning_cli.planning_change(args, config)
    cost = cost_cli.CostChange(args)

    async def work(conn: asyncpg.Connection) -> int:
        created = await create_campaign_from_request(conn, request, config.whatsapp.waba_id)
        await planning_cli.apply_planning(conn, created.campaign_id, planning, config)
        await cost.apply(conn, created.campaign_id)
        if created.source is TemplateSource.UNVERIFIED:
            print(
                f"wa-sender: note: template {printable(template_name)} ({printable(language)})"
                " is unverified: no template catalogue (set whatsapp.waba_id and run"
                " `wa-sender templates sync`, or pass --template-file)",
                file=sys.stderr,
            )
        if args.json:
            print_json(campaign_dict(await store.get_campaign(conn, created.campaign_id)))
        else:
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
    """`campaign status ID`: the per-state table (or JSON), or `--watch` it live; a warning
    on stderr when the campaign still has work and no daemon is alive."""
    if args.watch:
        if args.json:
            raise UsageError("--watch and --json cannot be combined")
        return watch_campaign(config, args.id)

    async def work(conn: asyncpg.Connection) -> int:
        progress = await store.campaign_progress(conn, args.id)
        spent = await cost_cli.committed_line(conn, progress.campaign)
        if args.json:
            document = progress_dict(progress)
            if spent is not None:
                document["budget_committed"] = f"{spent[0]:f}"
            print(json.dumps(document, indent=2))
        else:
            print(progress_table(progress) + (f"\n{spent[1]}" if spent is not None else ""))
        if progress.campaign.state not in QUIET_STATES:
            await warn_if_no_daemon(conn)
        return 0

    return with_connection(config, work)


async def warn_if_no_daemon(conn: asyncpg.Connection, out: TextIO | None = None) -> bool:
    """One warning line on stderr when no daemon heartbeated lately; whether it was printed."""
    if await live_daemon_count(conn) > 0:
        return False
    print(NO_DAEMON_WARNING, file=out or sys.stderr)
    return True


def _lifecycle(command: CampaignCommand) -> Handler:
    def handler(args: argparse.Namespace, config: Config) -> int:
        start_at = planning_cli.start_at_of(args, config)

        async def work(conn: asyncpg.Connection) -> int:
            if start_at is not None:
                check_start_at(start_at, datetime.now(UTC))
                result = await change_state(
                    conn, args.id, CampaignCommand.SCHEDULE, start_at=start_at
                )
            else:
                result = await change_state(conn, args.id, command)
            progress = await store.campaign_progress(conn, result.campaign.id)
            if args.json:
                print_json(lifecycle_dict(command, result, progress_dict(progress)))
            else:
                print(lifecycle_line(command, result))
            if command in (CampaignCommand.START, CampaignCommand.RESUME):
                await warn_if_no_daemon(conn)
            return 0

        return with_connection(config, work)

    handler.__doc__ = f"`campaign {command.value} ID`."
    return handler


def lifecycle_line(command: CampaignCommand, result: LifecycleResult) -> str:
    """What a lifecycle command prints: the new state, and for a stop what it waited for."""
    c = result.campaign
    if not result.changed:
        return f"campaign {c.id} is already {c.state.value}: nothing to resume"
    line = f"campaign {c.id} is {c.state.value}"
    if c.state is CampaignState.SCHEDULED and c.start_at is not None:
        return line + f": starts at {utc_text(c.start_at)}"
    if command not in (CampaignCommand.PAUSE, CampaignCommand.CANCEL):
        return line
    if command is CampaignCommand.CANCEL:
        line += f": {result.canceled} contacts canceled"
        if result.unknown_outcome:
            line += f" ({result.unknown_outcome} of them with an unknown outcome)"
    confirmed = f"{result.confirmed_by} daemon{'' if result.confirmed_by == 1 else 's'}"
    line += f"; no message can leave any daemon ({confirmed} confirmed"
    if result.silent:
        silent = ", ".join(printable(d.id) for d in result.silent)
        line += f", {len(result.silent)} silent past their send bound: {silent}"
    return line + f", {result.seconds:.2f} s)"


def lifecycle_dict(
    command: CampaignCommand, result: LifecycleResult, progress: dict[str, Any]
) -> dict[str, Any]:
    """The `--json` of a lifecycle command: the campaign, its counts, what the stop did."""
    document = {**progress, "changed": result.changed}
    if command in (CampaignCommand.PAUSE, CampaignCommand.CANCEL):
        document["stop"] = {
            "daemons_confirmed": result.confirmed_by,
            "daemons_silent": [d.id for d in result.silent],
            "canceled": result.canceled,
            "unknown_outcome": result.unknown_outcome,
            "seconds": round(result.seconds, 3),
        }
    return document


def watch_campaign(
    config: Config, campaign_id: int, *, interval_s: float = 1.0, out: TextIO | None = None
) -> int:
    """The `campaign status ID --watch` command: 0 once the campaign is over, 130 on Ctrl-C.
    `out` defaults to sys.stdout."""
    stream = sys.stdout if out is None else out

    async def work(conn: asyncpg.Connection) -> int:
        if (await store.get_campaign(conn, campaign_id)).state not in QUIET_STATES:
            await warn_if_no_daemon(conn)
        await watch(conn, campaign_id, interval_s=interval_s, out=stream)
        return 0

    try:
        return with_connection(config, work)
    except KeyboardInterrupt:
        stream.write("\n")
        stream.flush()
        return EXIT_INTERRUPTED
