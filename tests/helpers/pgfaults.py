"""Database faults for the fault table (tests/test_database_faults.py): a PostgreSQL server of
the test's own that can be restarted (fast, immediate) or stopped, and the other faults done
the way an operator or a bad day does them (pg_terminate_backend, ALTER SYSTEM read-only, a
role's statement_timeout, a table lock, a full filesystem under a tablespace)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from daemon.db import embedded
from daemon.db.embedded import EmbeddedPostgres

DAEMON_ROLE = "wa_daemon"


class RestartablePostgres(EmbeddedPostgres):
    """An embedded server whose postmaster can be stopped and started again on the same socket
    (the daemon keeps its DSN)."""

    _args: list[str | Path] | None = None

    def _popen_server(
        self, args: list[str | Path], log: int, run_dir: Path
    ) -> subprocess.Popen[bytes]:
        self._args = args
        return super()._popen_server(args, log, run_dir)

    def halt(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Stop the postmaster (SIGINT fast, SIGQUIT immediate), keeping the cluster."""
        proc = self._proc
        assert proc is not None
        proc.send_signal(sig)
        proc.wait(30)

    def resume(self, timeout_s: float = 30) -> None:
        """Start the postmaster again with the same arguments and socket."""
        assert self._args is not None and self._run_dir is not None
        run_dir = self._run_dir
        data = Path(str(self._args[2]))
        with open(run_dir / "postgres.log", "ab") as log:
            self._proc = embedded._spawn(
                functools.partial(self._popen_server, self._args, log.fileno(), run_dir)
            )
        self._wait_ready(self._proc, data, run_dir, time.monotonic() + timeout_s)


def role_dsn(dsn: str, role: str) -> str:
    """`dsn` logging in as `role`."""
    return dsn.replace("postgresql://postgres@", f"postgresql://{role}@", 1)


async def terminate(admin: asyncpg.Connection, database: str) -> int:
    """Kill every other session on `database`; how many."""
    killed: int = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return killed


@contextlib.asynccontextmanager
async def admin_connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


FaultFn = Callable[["FaultContext"], Awaitable[None]]


class FaultContext:
    """What a fault needs: the server, an admin DSN, the test database's name."""

    def __init__(self, server: RestartablePostgres, admin_dsn: str, database: str) -> None:
        self.server = server
        self.admin_dsn = admin_dsn
        self.database = database
        self.notes: dict[str, Any] = {}


async def terminate_loop(ctx: FaultContext, seconds: float = 10.0) -> None:
    async with admin_connection(ctx.admin_dsn) as admin:
        deadline = time.monotonic() + seconds
        killed = 0
        while time.monotonic() < deadline:
            killed += await terminate(admin, ctx.database)
            await asyncio.sleep(0.2)
    ctx.notes["sessions_killed"] = killed


async def read_only(ctx: FaultContext, seconds: float = 15.0) -> None:
    async with admin_connection(ctx.admin_dsn) as admin:
        await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        await admin.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(seconds)
        await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await admin.execute("SELECT pg_reload_conf()")


async def statement_timeout_1ms(ctx: FaultContext, seconds: float = 15.0) -> None:
    # A role setting applies to sessions that start after it: the daemon's are ended both ways.
    async with admin_connection(ctx.admin_dsn) as admin:
        await admin.execute(f"ALTER ROLE {DAEMON_ROLE} SET statement_timeout = '1ms'")
        await terminate(admin, ctx.database)
        await asyncio.sleep(seconds)
        await admin.execute(f"ALTER ROLE {DAEMON_ROLE} RESET statement_timeout")
        await terminate(admin, ctx.database)


def table_lock(seconds: float) -> FaultFn:
    async def fault(ctx: FaultContext) -> None:
        dsn = ctx.admin_dsn.replace("/postgres?", f"/{ctx.database}?", 1)
        async with admin_connection(dsn) as conn:
            async with conn.transaction():
                await conn.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
                await asyncio.sleep(seconds)

    return fault


def restart(sig: signal.Signals) -> FaultFn:
    async def fault(ctx: FaultContext) -> None:
        await asyncio.to_thread(ctx.server.halt, sig)
        await asyncio.to_thread(ctx.server.resume)

    return fault


async def stopped_15s(ctx: FaultContext) -> None:
    await asyncio.to_thread(ctx.server.halt, signal.SIGINT)
    await asyncio.sleep(15)
    await asyncio.to_thread(ctx.server.resume)


class TinyDisk:
    """A tmpfs of `size_mb` under a tablespace that holds `contacts` (root only: mount)."""

    def __init__(self, size_mb: int = 24) -> None:
        self.size_mb = size_mb
        self.path = Path(tempfile.mkdtemp(prefix="wa-tinydisk-", dir="/tmp"))
        self.mounted = False

    def mount(self, owner: str) -> None:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs", self.path],
            check=True,
            capture_output=True,
        )
        self.mounted = True
        shutil.chown(self.path, owner, owner)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)
            self.mounted = False
        with contextlib.suppress(OSError):
            self.path.rmdir()


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    return os.geteuid() == 0 and shutil.which("mount") is not None


def disk_full(seconds: float = 20.0) -> FaultFn:
    """Fill the tablespace holding contacts with a filler table until ENOSPC, hold, drop it."""

    async def fault(ctx: FaultContext) -> None:
        dsn = ctx.admin_dsn.replace("/postgres?", f"/{ctx.database}?", 1)
        async with admin_connection(dsn) as conn:
            await conn.execute("CREATE TABLE filler (x text) TABLESPACE tiny")
            await conn.execute("ALTER TABLE filler ALTER COLUMN x SET STORAGE PLAIN")
            filled = 0
            with contextlib.suppress(asyncpg.exceptions.DiskFullError):
                while True:
                    await conn.execute(
                        "INSERT INTO filler SELECT repeat('x', 1800) FROM generate_series(1, 500)"
                    )
                    filled += 1
            # The failed insert's pages stay allocated: the filesystem is full now.
            ctx.notes["filler_batches"] = filled
            await asyncio.sleep(seconds)
            await conn.execute("DROP TABLE filler")

    return fault
