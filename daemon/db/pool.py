"""The asyncpg pool: codecs set up once per connection, driver errors translated at the edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson

from daemon.errors import DatabaseError

# Errors after which a write may succeed if simply tried again later (database restarting,
# network blip); record writes retry on these through outages.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    # "database is not currently accepting connections" (ALLOW_CONNECTIONS false, maintenance)
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
    # the protocol state of a connection killed in the middle of an operation
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    OSError,
    TimeoutError,
)

# Errors of a database that is there but does not take writes now: read-only (a failover, a
# maintenance switch), statement_timeout, disk full or out of memory, lock and serialisation
# conflicts, I/O errors. The daemon stops sending while they last and retries its writes.
BLOCKED_WRITE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.PostgresSystemError,
)

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, *BLOCKED_WRITE_ERRORS)
"""What the daemon's loops retry through: a lost connection or a database blocking writes."""

# Errors a value in the statement causes (a unique violation, a number out of range, a byte
# the encoding refuses): writing the same batch again fails again, so the recorder isolates
# the result that causes it.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)


def is_blocked_write(exc: BaseException) -> bool:
    """Whether `exc` says the database blocks writes (not that the connection was lost)."""
    return isinstance(exc, BLOCKED_WRITE_ERRORS)


class JsonText(str):
    """A value that is already JSON text: written to json/jsonb columns as is."""

    __slots__ = ()


def _encode_jsonb(value: object) -> bytes:
    if isinstance(value, JsonText):
        return b"\x01" + value.encode()
    return b"\x01" + orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _decode_jsonb(data: bytes) -> object:
    return orjson.loads(memoryview(data)[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary format so that COPY (which is binary in asyncpg) can write jsonb too.
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


MAX_CACHEABLE_STATEMENT_BYTES = 64 * 1024
"""asyncpg prepares and keeps statements up to this size (its default, 15 KiB, is less than
the receipts' statements with their comments: those were parsed, planned and described again
on every call)."""


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the pool's codecs; DatabaseError when the database cannot be reached."""
    try:
        conn = await asyncpg.connect(
            dsn, max_cacheable_statement_size=MAX_CACHEABLE_STATEMENT_BYTES
        )
    except (ValueError, OverflowError) as exc:
        raise malformed_dsn(exc) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    await _init_connection(conn)
    return conn


def malformed_dsn(exc: ValueError | OverflowError) -> DatabaseError:
    """One line for a DSN asyncpg cannot parse (a port that is not a number or out of range,
    a broken IPv6 address); the DSN itself is never shown (it may hold a password)."""
    text = str(exc)
    if isinstance(exc, OverflowError):
        why = "its port is not in 0-65535"
    elif "int()" in text:
        why = "its port is not a number"
    else:
        why = text.splitlines()[0][:120]
    return DatabaseError(f"database.url (or DATABASE_URL) is malformed: {why}")


class PoolConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without asyncpg's reset round trip (UNLISTEN *, RESET ALL,
    advisory unlock, CLOSE ALL): the daemon keeps no session state on pool connections (its
    locks and settings are transaction-scoped, LISTEN has a connection of its own), and an
    open transaction is still rolled back on release."""

    def get_reset_query(self) -> str:
        """No reset on release (see the class)."""
        return ""


@asynccontextmanager
async def open_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, close_timeout_s: float = 10.0
) -> AsyncIterator[asyncpg.Pool]:
    """The pool for the body of the `async with`, closed after it within `close_timeout_s`."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            connection_class=PoolConnection,
            max_cacheable_statement_size=MAX_CACHEABLE_STATEMENT_BYTES,
        )
    except (ValueError, OverflowError) as exc:
        raise malformed_dsn(exc) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), close_timeout_s)
        except TimeoutError:
            pool.terminate()
