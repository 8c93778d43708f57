"""Child processes of the harness: spawned with their output in a log file, always reaped.

Reaping goes through ``os.wait4`` so that each child's own CPU time comes from the kernel
(``rusage``), exact even for a child that was SIGKILLed between two samples. (Its
``ru_maxrss`` is not used: Linux carries the parent's high-water mark over fork+exec.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon.db.embedded import die_with_parent
from daemon.engine.ports import free_port as free_port  # re-exported for the harness

_POLL_S = 0.02


@dataclass(frozen=True)
class ExitInfo:
    returncode: int
    cpu_user_s: float
    cpu_system_s: float
    at: float  # epoch seconds at reaping

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_system_s


@dataclass
class Child:
    """One spawned process; ``exit`` is filled once it has been reaped."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    exit: ExitInfo | None = None
    killed_at: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.exit is None


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
    stdout_pipe: bool = False,
) -> Child:
    """Start ``argv``; stderr (and stdout unless piped) go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            # Own process group: a Ctrl-C in the terminal reaches the harness only, which then
            # stops its children in order; a harness killed outright takes them with it.
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid(), signal.SIGTERM),
        )
    return Child(name, popen, log_path, time.time())


def try_reap(child: Child) -> ExitInfo | None:
    """Reap ``child`` if it has exited (never blocks)."""
    if child.exit is not None:
        return child.exit
    try:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: no rusage left to read
        child.exit = ExitInfo(child.popen.returncode or -1, 0.0, 0.0, time.time())
        return child.exit
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    child.popen.returncode = code  # Popen must not wait for it again
    if child.popen.stdout is not None:
        child.popen.stdout.close()
    child.exit = ExitInfo(code, usage.ru_utime, usage.ru_stime, time.time())
    return child.exit


async def wait_exit(child: Child, timeout_s: float) -> ExitInfo | None:
    deadline = time.monotonic() + timeout_s
    while True:
        info = try_reap(child)
        if info is not None or time.monotonic() >= deadline:
            return info
        await asyncio.sleep(_POLL_S)


def send_signal(child: Child, sig: signal.Signals) -> None:
    if child.exit is None:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass


async def stop(child: Child, timeout_s: float = 30.0) -> ExitInfo:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; always reaped on return."""
    send_signal(child, signal.SIGTERM)
    info = await wait_exit(child, timeout_s)
    if info is None:
        info = await kill(child)
    return info


async def kill(child: Child) -> ExitInfo:
    """SIGKILL and reap (the kernel delivers it; reaping takes milliseconds)."""
    if child.killed_at is None and child.exit is None:
        child.killed_at = time.time()
    send_signal(child, signal.SIGKILL)
    info = await wait_exit(child, 10.0)
    if info is None:  # pragma: no cover - a SIGKILLed child that does not die
        raise RuntimeError(f"{child.name} (pid {child.pid}) survived SIGKILL")
    return info


def kill_now(children: Sequence[Child]) -> None:
    """Last-resort cleanup from synchronous code (``finally`` after a crash): SIGKILL + reap."""
    for child in children:
        send_signal(child, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    for child in children:
        while try_reap(child) is None and time.monotonic() < deadline:
            time.sleep(_POLL_S)


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The harness's environment without wa-sender settings, plus ``extra``: children are
    configured by the harness alone, whatever the calling shell exports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WA_SENDER_") and k != "DATABASE_URL"
    }
    env.update(extra)
    return env
