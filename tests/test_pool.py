"""The pool's connections: released without a reset round trip, yet never dirty."""

from __future__ import annotations

import asyncpg

from daemon.db.pool import open_pool


async def test_release_rolls_back_an_unfinished_transaction(db_dsn: str) -> None:
    async with open_pool(db_dsn, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("CREATE TABLE left_open (x int)")
        # The only connection again: the table never committed, no transaction is open.
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None


async def test_release_sends_no_reset_statement(db_dsn: str) -> None:
    """asyncpg's reset (UNLISTEN *, RESET ALL, advisory unlock, CLOSE ALL) costs a round trip
    on every release; the daemon keeps no session state on pool connections, so it is skipped:
    a session setting made on purpose survives the release."""
    async with open_pool(db_dsn, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'kept'")
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert await conn.fetchval("SHOW application_name") == "kept"


async def test_transaction_scoped_locks_end_with_their_transaction(db_dsn: str) -> None:
    async with open_pool(db_dsn, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(42)")
        other = await asyncpg.connect(db_dsn)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock(42)") is True
        finally:
            await other.close()
