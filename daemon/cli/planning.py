"""`campaign create|update --window/--window-zone/--finish-by`, `campaign update`, and
`campaign start --at` (registered by `cli.campaign`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import asyncpg

from daemon.cli import cost as cost_cli
from daemon.cli.common import Commands, positive_int, print_json, with_connection
from daemon.config import Config
from daemon.core.model import Campaign
from daemon.core.windows import WindowError, check_zone, parse_moment, parse_window
from daemon.errors import UsageError
from daemon.ops.planning import KEEP, PlanningChange, update_planning
from daemon.ops.render import campaign_dict, planning_lines

NONE_WORDS = frozenset({"", "none", "off"})
"""`--window none` / `--finish-by none`: remove it."""


def add_planning_options(parser: argparse.ArgumentParser) -> None:
    """`--window`, `--window-zone`, `--finish-by`."""
    parser.add_argument(
        "--window",
        metavar="SPEC",
        help="send only in this window of the recipient's local time, e.g."
        " 'Mon-Fri 09:00-20:00, Sat 10:00-14:00' ('none': any time)",
    )
    parser.add_argument(
        "--window-zone",
        metavar="ZONE",
        help="the zone of numbers whose country has several (US, BR, RU, IN...), e.g."
        " America/New_York (default: planning.time_zone)",
    )
    parser.add_argument(
        "--finish-by",
        metavar="TIME",
        help="spread the remaining contacts evenly up to this ISO 8601 time (without an"
        " offset: planning.time_zone), below the number's rate ('none': full speed)",
    )


def add_actions(sub: Commands) -> None:
    """Add `update` to `campaign`'s actions."""
    p = sub.add_parser(
        "update",
        help="change a campaign's send window, window zone, finish-by time, rate card or budget",
        description="Change the planning of a campaign that has not ended; the daemons apply"
        " it at once.",
    )
    p.add_argument("id", type=positive_int, help="campaign id")
    add_planning_options(p)
    cost_cli.add_cost_options(p)
    p.add_argument("--json", action="store_true", help="print the campaign as JSON")
    p.set_defaults(handler=cmd_campaign_update)


def planning_change(args: argparse.Namespace, config: Config) -> PlanningChange:
    """The planning options of `args`, checked (UsageError: one line)."""
    try:
        window: object = KEEP
        if args.window is not None:
            text = args.window.strip()
            window = None if text.lower() in NONE_WORDS else parse_window(text).text
        zone: object = KEEP
        if args.window_zone is not None:
            given = args.window_zone.strip()
            zone = None if given.lower() in NONE_WORDS else check_zone(given)
        finish_by: object = KEEP
        if args.finish_by is not None:
            given = args.finish_by.strip()
            finish_by = (
                None
                if given.lower() in NONE_WORDS
                else parse_moment(given, config.planning.time_zone)
            )
    except WindowError as exc:
        raise UsageError(str(exc)) from None
    return PlanningChange(window, zone, finish_by)


def start_at_of(args: argparse.Namespace, config: Config) -> datetime | None:
    """`campaign start --at TIME` as an aware time (None without --at)."""
    if getattr(args, "at", None) is None:
        return None
    try:
        return parse_moment(args.at, config.planning.time_zone)
    except WindowError as exc:
        raise UsageError(f"--at: {exc}") from None


async def apply_planning(
    conn: asyncpg.Connection, campaign_id: int, change: PlanningChange, config: Config
) -> Campaign | None:
    """Store `change` (None when it is empty)."""
    if change.empty:
        return None
    return await update_planning(
        conn,
        campaign_id,
        change,
        default_zone=config.planning.time_zone,
        now=datetime.now(UTC),
    )


def cmd_campaign_update(args: argparse.Namespace, config: Config) -> int:
    """`campaign update ID`: the new planning, printed."""
    change = planning_change(args, config)
    cost = cost_cli.CostChange(args)
    if change.empty and cost.empty:
        raise UsageError(
            "nothing to update: give --window, --window-zone, --finish-by, --rate-card or --budget"
        )

    async def work(conn: asyncpg.Connection) -> int:
        campaign = await apply_planning(conn, args.id, change, config)
        campaign = await cost.apply(conn, args.id) or campaign
        assert campaign is not None
        if args.json:
            print_json(campaign_dict(campaign))
        else:
            lines = planning_lines(campaign, None) or [
                "no send window, no finish-by time, no budget"
            ]
            print(f"campaign {campaign.id}: " + "; ".join(lines))
        return 0

    return with_connection(config, work)
