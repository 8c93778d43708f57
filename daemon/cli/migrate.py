"""`wa-sender migrate`: apply pending schema migrations."""

from __future__ import annotations

import argparse
import asyncio

from daemon.cli.common import Commands, print_json
from daemon.config import Config
from daemon.db.database import database_dsn
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect


def add_parser(commands: Commands) -> None:
    """Register `migrate`."""
    p = commands.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    p.add_argument("--json", action="store_true", help="print the migrations applied as JSON")
    p.set_defaults(handler=cmd_migrate)


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    """`migrate`: apply the pending migrations and say which."""
    with database_dsn(config.database) as dsn:

        async def main() -> int:
            conn = await connect(dsn)
            try:
                applied = await apply_migrations(conn)
            finally:
                await conn.close()
            if args.json:
                print_json({"applied": applied, "up_to_date": True})
            else:
                print("applied: " + ", ".join(applied) if applied else "schema is up to date")
            return 0

        return asyncio.run(main())
