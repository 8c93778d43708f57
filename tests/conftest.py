"""Real PostgreSQL for every test: the schema is migrated once into a template database and
each test gets its own database cloned from it (CREATE DATABASE ... TEMPLATE, ~25 ms).

With DATABASE_URL set, that server is used (test databases are created and dropped on it);
otherwise a throwaway embedded server is started for the session.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import structlog

from daemon.db.database import create_database, drop_database, with_database_name
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A test that runs the CLI configures logging onto its captured stdout, which pytest
    closes afterwards: later tests must not log into that closed file."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from daemon.db.embedded import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server.dsn


@pytest.fixture(scope="session")
async def template_db(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"wa_tpl_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await create_database(admin, name)
        conn = await connect(with_database_name(pg_server_dsn, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield name
        await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def db_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"wa_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await create_database(admin, name, template=template_db)
        yield with_database_name(pg_server_dsn, name)
        await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(db_dsn)
    try:
        yield connection
    finally:
        await connection.close()
