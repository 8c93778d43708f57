"""What every command group shares: the database connection (and schema check) a command
runs on, and the argument types."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeAlias

import asyncpg

from daemon.config import Config
from daemon.core.phones import InvalidPhone, known_region, normalize_phone
from daemon.db.database import database_dsn
from daemon.db.migrate import apply_migrations, require_current_schema
from daemon.db.pool import connect
from daemon.errors import WaSenderError

Handler = Callable[[argparse.Namespace, Config], int]
"""A command: the parsed arguments and the loaded config in, the exit code out."""
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What a group module's `add_parser` adds its commands to."""


def config_path(args: argparse.Namespace) -> Path | None:
    """The config file to read: `--config` when given (it must exist), else ./config.toml if
    there is one, else None (built-in defaults and the environment)."""
    path = Path(args.config)
    if not getattr(args, "config_explicit", True) and not path.exists():
        return None
    return path


def with_connection(config: Config, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    """Run `work` on one connection to the configured (or embedded) database."""
    return with_connections(config, 1, lambda conns: work(conns[0]))


def with_connections(
    config: Config, count: int, work: Callable[[list[asyncpg.Connection]], Awaitable[int]]
) -> int:
    """Run `work` on `count` connections to the configured (or embedded) database."""
    with database_dsn(config.database) as dsn:

        async def main() -> int:
            conns: list[asyncpg.Connection] = []
            try:
                for _ in range(count):
                    conns.append(await connect(dsn))
                await ensure_schema(conns[0], embedded=not config.database.url)
                return await work(conns)
            finally:
                for conn in conns:
                    await conn.close()

        return asyncio.run(main())


def ensure_embedded_schema(dsn: str) -> None:
    """Apply the migrations to the database at `dsn` (the embedded one migrates itself)."""

    async def main() -> None:
        conn = await connect(dsn)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(main())


async def ensure_schema(conn: asyncpg.Connection, *, embedded: bool) -> None:
    """The embedded database migrates itself; a configured one must be migrated on purpose."""
    if embedded:
        await apply_migrations(conn)
        return
    await require_current_schema(conn)


def parse_phone(raw: str, default_country: str | None = None) -> str:
    """The normalised phone number (national forms read in `default_country`); WaSenderError
    (one line) when it is not one."""
    try:
        return normalize_phone(raw, default_country)
    except InvalidPhone as exc:
        missing = exc.reason == "missing_country_code"
        hint = " (add the country code, or --default-country)" if missing else ""
        raise WaSenderError(f"invalid phone {raw!r}: {exc.reason}{hint}") from None


def phone_arg(raw: str) -> str:
    """Argument type: a phone number as written; `phones_of` normalises it once the default
    country is known."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("empty phone number")
    return raw


def phones_of(args: argparse.Namespace, config: Config) -> list[str]:
    """`args.phones` normalised in `--default-country` (else `import.default_country`)."""
    country = default_country(args, config)
    return [parse_phone(raw, country) for raw in args.phones]


def default_country(args: argparse.Namespace, config: Config) -> str | None:
    """`--default-country` when given, else `import.default_country`, else None."""
    given = getattr(args, "default_country", None) or config.imports.default_country
    return known_region(given) if given else None


def country_arg(raw: str) -> str:
    """Argument type: an ISO 3166 alpha-2 country code phonenumbers knows ("cz" -> "CZ")."""
    try:
        return known_region(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_country_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--default-country CC`."""
    parser.add_argument(
        "--default-country",
        type=country_arg,
        metavar="CC",
        help=f"read {what} without a country code as numbers of this country (ISO 3166, e.g."
        " CZ); default: import.default_country",
    )


def phone_number_id_arg(raw: str) -> str:
    """Argument type: a WhatsApp phone number id (digits only, as Meta shows it)."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"a phone number id is digits only (Meta's WhatsApp Manager shows it), got {raw!r}"
        )
    return text


def print_json(document: object) -> None:
    """Print one JSON document (the `--json` output of a command)."""
    print(json.dumps(document, indent=2, default=str))


def positive_int(raw: str) -> int:
    """Argument type: a whole number above 0 (ids, counts)."""
    value = _whole_number(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {raw!r}")
    return value


def days(raw: str) -> int:
    """Argument type: a number of days, 0 or more."""
    value = _whole_number(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more days, got {raw!r}")
    return value


def _whole_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
