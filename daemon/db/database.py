"""Which PostgreSQL to use: the configured one, or a local embedded one started on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from daemon.config import DatabaseConfig
from daemon.db.sql import query_with_identifiers


def default_state_dir() -> Path:
    """Where the embedded PostgreSQL keeps its data by default (per user, or /var/lib for root)."""
    if os.geteuid() == 0:
        # The server runs as an unprivileged user, who cannot reach into /root.
        return Path("/var/lib/wa-sender/pgdata")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "wa-sender" / "pgdata"


@contextmanager
def database_dsn(config: DatabaseConfig, *, throwaway: bool = False) -> Iterator[str]:
    """Yield a DSN: `database.url` if set; else an embedded server for the duration.

    The embedded server keeps its data in `database.embedded_dir` (default: the per-user state
    directory) so separate CLI commands see the same campaigns; `throwaway=True` uses a
    temporary cluster deleted afterwards (the demo, the tests).
    """
    if config.url:
        yield config.url
        return
    from daemon.db.embedded import EmbeddedPostgres

    data_dir = None if throwaway else Path(config.embedded_dir or default_state_dir())
    if data_dir is not None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedPostgres(data_dir=data_dir) as server:
        yield server.dsn


def with_database_name(dsn: str, name: str) -> str:
    """`dsn` naming the database `name` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(
    admin: asyncpg.Connection, name: str, *, template: str | None = None
) -> None:
    """``CREATE DATABASE name`` (a copy of ``template`` when given), names quoted."""
    if template is None:
        await admin.execute(query_with_identifiers("create_database", database=name))
    else:
        sql = query_with_identifiers(
            "create_database_from_template", database=name, template=template
        )
        await admin.execute(sql)


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """``DROP DATABASE IF EXISTS name WITH (FORCE)``, the name quoted."""
    await admin.execute(query_with_identifiers("drop_database", database=name))
