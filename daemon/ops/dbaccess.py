"""The embedded database reachable from outside wa-sender: its DSN, a keeper process that holds
it up between commands, and psql on it.

The embedded PostgreSQL lives only as long as the process that started it (PR_SET_PDEATHSIG),
and listens on a socket in a private temp dir: a DSN printed by a process that then exits
would point at nothing. So `wa-sender db url`, when no server runs on the data dir, starts a
keeper (`wa-sender db serve`, detached): it owns the server and stops it after a while
without any client connection (`KEEPER_IDLE_S`), or on `wa-sender db stop`. Every other
command (the daemon too) attaches to a server already running on the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from daemon.config import DatabaseConfig
from daemon.db.database import default_state_dir
from daemon.db.embedded import EmbeddedPostgres, running_dsn
from daemon.db.migrate import apply_migrations
from daemon.db.pgbinaries import find_binaries
from daemon.db.pool import connect
from daemon.db.sql import query
from daemon.errors import EmbeddedPostgresError, WaSenderError
from daemon.logs import get_logger

log = get_logger(__name__)

KEEPER_IDLE_S: Final = 600.0
"""The keeper stops the server after this long without a client connection."""
IDLE_CHECK_S: Final = 5.0
START_TIMEOUT_S: Final = 60.0
PSQL_MISSING: Final = (
    "psql is not installed: install the PostgreSQL client (e.g. `apt install "
    "postgresql-client`), or run the reports with `wa-sender report NAME`"
)


def data_dir(config: DatabaseConfig) -> Path:
    """The embedded server's data directory (database.embedded_dir, else the state dir)."""
    return Path(config.embedded_dir or default_state_dir()).resolve()


def keeper_pid_file(data: Path) -> Path:
    """Where the keeper of `data` writes its pid (next to the data dir, not in it)."""
    return data.with_name(data.name + ".keeper.pid")


def keeper_log_file(data: Path) -> Path:
    """The keeper's own log (what it says when it cannot start the server)."""
    return data.with_name(data.name + ".keeper.log")


def migrate(dsn: str) -> None:
    """Apply the migrations (the embedded database migrates itself)."""

    async def main() -> None:
        conn = await connect(dsn)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(main())


def embedded_url(config: DatabaseConfig, *, config_file: str | None = None) -> str:
    """The DSN of the server running on the data dir; when none runs, a keeper is started
    for it first (see the module docstring). Migrated."""
    data = data_dir(config)
    dsn = running_dsn(data)
    if dsn is None:
        dsn = _start_keeper(data, config_file)
    migrate(dsn)
    return dsn


def _start_keeper(data: Path, config_file: str | None) -> str:
    data.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "daemon"]
    if config_file is not None:
        argv += ["--config", config_file]
    argv += ["db", "serve", "--data-dir", str(data)]
    with open(keeper_log_file(data), "ab") as log_file:
        keeper = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # not stopped by the Ctrl-C of the shell that asked
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while (dsn := running_dsn(data)) is None:
        if keeper.poll() is not None:
            tail = _tail(keeper_log_file(data))
            raise EmbeddedPostgresError(f"the embedded PostgreSQL did not start: {tail}")
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError("the embedded PostgreSQL did not start in time")
        time.sleep(0.05)
    return dsn


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no log)"


def serve(data: Path, idle_exit_s: float = KEEPER_IDLE_S) -> int:
    """`db serve`: run the server on `data` in the foreground until SIGTERM/SIGINT or
    `idle_exit_s` without a client connection; 0."""
    stop = asyncio.Event()
    data.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedPostgres(data_dir=data) as server:
        if server.pid is None:
            raise WaSenderError(f"a server already runs on {data}: nothing to keep")
        pid_file = keeper_pid_file(data)
        pid_file.write_text(f"{os.getpid()}\n")
        try:
            migrate(server.dsn)
            log.info("embedded_server_kept", data_dir=str(data), idle_exit_s=idle_exit_s)
            asyncio.run(_keep(server.dsn, idle_exit_s, stop))
        finally:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
    return 0


async def _keep(dsn: str, idle_exit_s: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    conn = await connect(dsn)
    try:
        idle_since: float | None = None
        while not stop.is_set():
            if await conn.fetchval(query("client_connections")) > 0:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            elif loop.time() - idle_since >= idle_exit_s:
                log.info("embedded_server_idle", idle_s=round(loop.time() - idle_since))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), IDLE_CHECK_S)
    finally:
        await conn.close()


def stop_keeper(config: DatabaseConfig, timeout_s: float = 30.0) -> str:
    """`db stop`: stop the server a keeper holds (SIGTERM to the keeper); what was done."""
    data = data_dir(config)
    pid = _keeper_pid(data)
    if pid is None:
        if running_dsn(data) is not None:
            return (
                f"the server on {data} was started by another wa-sender command, not `db url`: "
                "it stops when that command exits"
            )
        return f"no embedded PostgreSQL server runs on {data}"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            raise WaSenderError(f"the keeper (pid {pid}) did not stop within {timeout_s:.0f} s")
        time.sleep(0.05)
    return f"stopped the embedded PostgreSQL server on {data} (keeper pid {pid})"


def _keeper_pid(data: Path) -> int | None:
    try:
        pid = int(keeper_pid_file(data).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid if _alive(pid) else None
    return pid if b"serve" in cmdline and b"db" in cmdline else None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def find_psql() -> Path | None:
    """psql: next to the embedded server's binaries (same major version) if there, else the
    one on PATH; None if there is none."""
    with contextlib.suppress(EmbeddedPostgresError):
        candidate = find_binaries().bindir / "psql"
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("psql")
    return Path(found) if found else None


def run_psql(dsn: str, args: Sequence[str]) -> int:
    """psql on `dsn` with `args`, in the foreground until it exits; its exit code. Ctrl-C
    goes to psql (it cancels the query), not to us."""
    psql = find_psql()
    if psql is None:
        raise WaSenderError(PSQL_MISSING)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(
            [str(psql), dsn, *args], check=False, preexec_fn=_default_sigint
        ).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    """In psql's process, before exec: an ignored signal would stay ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
