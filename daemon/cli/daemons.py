"""`wa-sender daemons`: the live daemons on this database, their numbers, rates and last
heartbeat."""

from __future__ import annotations

import argparse

import asyncpg

from daemon.cli.common import Commands, print_json, with_connection
from daemon.config import Config
from daemon.db.daemons import DaemonRow, live_daemons
from daemon.ops.lifecycle import LIVE_WITHIN_S
from daemon.ops.render import printable

ALL_WITHIN_S = 86_400.0 * 365


def add_parser(commands: Commands) -> None:
    """Register `daemons`."""
    p = commands.add_parser(
        "daemons",
        help=f"list the daemons heartbeating on this database (last {LIVE_WITHIN_S:.0f} s)",
    )
    p.add_argument(
        "--all", action="store_true", help="also daemons silent for longer (stopped or dead)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(handler=cmd_daemons)


def cmd_daemons(args: argparse.Namespace, config: Config) -> int:
    """`daemons`: one block per daemon (host, pid, version, heartbeat age, numbers, rates)."""

    async def work(conn: asyncpg.Connection) -> int:
        found = await live_daemons(conn, ALL_WITHIN_S if args.all else LIVE_WITHIN_S)
        if args.json:
            print_json([daemon_dict(d) for d in found])
        elif not found:
            print(f"no daemon has heartbeated in the last {LIVE_WITHIN_S:.0f} s")
        else:
            print(daemons_table(found))
        return 0

    return with_connection(config, work)


def daemon_dict(d: DaemonRow) -> dict[str, object]:
    """One daemon for `--json`."""
    return {
        "id": d.id,
        "hostname": d.hostname,
        "pid": d.pid,
        "version": d.version,
        "started_at": d.started_at.isoformat(),
        "heartbeat_at": d.heartbeat_at.isoformat(),
        "heartbeat_age_s": round(d.heartbeat_age_s, 3),
        "live": d.heartbeat_age_s <= LIVE_WITHIN_S,
        "sent": d.sent,
        "numbers": d.numbers,
    }


def daemons_table(found: list[DaemonRow]) -> str:
    """The daemons as a table: one row per daemon and sending number."""
    header = f"{'DAEMON':<34} {'PID':>7} {'HEARTBEAT':>10} {'SENT':>10}  {'NUMBER':<18}RATE/S"
    lines = [header]
    for d in found:
        age = f"{d.heartbeat_age_s:.1f}s ago"
        numbers = sorted(d.numbers.items()) or [("-", {})]
        for i, (number, rates) in enumerate(numbers):
            rate = (
                f"{rates.get('effective', 0):g} of {rates.get('rate', 0):g}"
                if rates
                else "(no number yet)"
            )
            left = (
                f"{printable(d.id):<34} {d.pid:>7} {age:>10} {d.sent:>10}" if i == 0 else " " * 65
            )
            lines.append(f"{left}  {printable(number):<18}{rate}")
    return "\n".join(lines)
