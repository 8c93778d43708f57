"""Apply pending migrations, once, in order, under an advisory lock (several daemons may race)."""

from __future__ import annotations

import asyncpg

from daemon.db.sql import migrations
from daemon.errors import DatabaseError

_MIGRATION_LOCK = 7_303_517_001  # arbitrary, fixed: serialises concurrent `migrate` runs

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied (empty: up to date)."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(_CREATE_TABLE)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """The migrations not applied yet, as NNNN_name."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [f"{m.version:04d}_{m.name}" for m in migrations() if m.version not in done]


async def require_current_schema(conn: asyncpg.Connection) -> None:
    """A configured database is migrated on purpose, by `wa-sender migrate`, never implicitly."""
    pending = await pending_migrations(conn)
    if pending:
        raise DatabaseError(
            f"the database schema is not up to date ({len(pending)} pending migration(s)): "
            "run `wa-sender migrate`"
        )
