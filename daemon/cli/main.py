"""The `wa-sender` command line: one entry point, one clear line on stderr for every error."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from daemon.cli import loadtest, mock, report, run, webhook
from daemon.cli.common import Handler, phone_arg, positive_int, with_connection
from daemon.config import Config, load_config
from daemon.core.payload import Template
from daemon.core.states import CampaignCommand
from daemon.db import campaigns as store
from daemon.db.database import database_dsn
from daemon.db.importer import import_contacts
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect
from daemon.errors import ConfigError, WaSenderError
from daemon.logs import configure_logging
from daemon.ops.render import campaign_dict, campaign_line, progress_dict, progress_table


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    with database_dsn(config.database) as dsn:

        async def main() -> int:
            conn = await connect(dsn)
            try:
                applied = await apply_migrations(conn)
            finally:
                await conn.close()
            print("applied: " + ", ".join(applied) if applied else "schema is up to date")
            return 0

        return asyncio.run(main())


def cmd_campaign_create(args: argparse.Namespace, config: Config) -> int:
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
    if args.watch:
        if args.json:
            raise ConfigError("--watch and --json cannot be combined")
        from daemon.ops.watch import watch_campaign

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


def cmd_contacts_import(args: argparse.Namespace, config: Config) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        result = await import_contacts(conn, args.id, Path(args.file))
        if args.json:
            print(
                json.dumps(
                    {
                        "campaign_id": result.campaign_id,
                        "rows": result.rows,
                        "imported": result.imported,
                        "invalid": result.invalid,
                        "reasons": result.reasons,
                    }
                )
            )
        else:
            print(f"imported {result.imported}, invalid {result.invalid} (of {result.rows} rows)")
            for reason, n in sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"  {reason}: {n}")
        return 0

    return with_connection(config, work)


def cmd_contacts_remove(args: argparse.Namespace, config: Config) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        removed, not_removed = await store.remove_contacts(conn, args.id, args.phones)
        print(f"removed {len(removed)}")
        for phone, why in not_removed.items():
            print(f"  not removed {phone}: {why}")
        return 0 if not not_removed else 1

    return with_connection(config, work)


def cmd_suppression(args: argparse.Namespace, config: Config) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wa-sender",
        description="Send WhatsApp template campaigns from PostgreSQL and track every contact.",
    )
    parser.add_argument(
        "--config", default="config.toml", help="config file (default ./config.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    p.set_defaults(handler=cmd_migrate)

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

    contacts = commands.add_parser("contacts", help="import or remove contacts")
    sub = contacts.add_subparsers(dest="contacts_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "import", help="load a CSV (header 'phone' or 'Guest phone number' + parameter columns)"
    )
    p.add_argument("id", type=positive_int)
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_contacts_import)
    p = sub.add_parser("remove", help="remove contacts (campaign draft or paused only)")
    p.add_argument("id", type=positive_int)
    p.add_argument("phones", nargs="+", type=phone_arg, metavar="PHONE")
    p.set_defaults(handler=cmd_contacts_remove)

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

    run.add_parser(commands)
    run.add_demo_parser(commands)
    mock.add_parser(commands)
    report.add_parser(commands)
    webhook.add_parser(commands)
    loadtest.add_parser(commands)
    return parser


def _config_path(raw: str, explicit: bool) -> Path | None:
    path = Path(raw)
    if not explicit and not path.exists():
        return None  # no ./config.toml: built-in defaults and the environment
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    explicit = any(a == "--config" or a.startswith("--config=") for a in args_list)
    try:
        config = load_config(_config_path(args.config, explicit))
        configure_logging(config.logging.format, config.logging.level, stream=sys.stderr)
        code: int = args.handler(args, config)
        return code
    except WaSenderError as exc:
        print(f"wa-sender: error: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"wa-sender: error: database refused the operation: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wa-sender: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
