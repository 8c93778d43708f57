"""The daemons under test: N separate ``wa-sender run`` processes on one database, started,
SIGKILLed and restarted (chaos), and stopped with SIGTERM like systemd would."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from daemon.db.sql import query
from daemon.errors import WaSenderError
from daemon.loadtest.processes import Child, clean_env, kill, spawn, stop, try_reap
from daemon.loadtest.sampling import ProcessSampler

READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DaemonSettings:
    dsn: str
    env: Mapping[str, str]  # WA_SENDER_* for every daemon
    web_ports: tuple[int, ...] = ()  # one per daemon: the webhook (receipts on)
    metrics_ports: tuple[int, ...] = ()  # one per daemon: /metrics
    probe: bool = True


@dataclass
class Slot:
    index: int
    generation: int = 0
    child: Child | None = None
    latency_files: list[Path] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)


class DaemonFleet:
    def __init__(
        self, count: int, settings: DaemonSettings, log_dir: Path, sampler: ProcessSampler
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.sampler = sampler
        self.slots = [Slot(i) for i in range(count)]
        self.children: list[Child] = []
        self.kills: list[float] = []

    def _spawn(self, slot: Slot) -> Child:
        slot.generation += 1
        stem = f"daemon{slot.index + 1}-{slot.generation}"
        latency = self.log_dir / f"{stem}.latency.jsonl"
        log = self.log_dir / f"{stem}.log"
        env = {**self.settings.env, "DATABASE_URL": self.settings.dsn}
        if self.settings.web_ports:
            env["WA_SENDER_WEBHOOK_PORT"] = str(self.settings.web_ports[slot.index])
        if self.settings.metrics_ports:
            env["WA_SENDER_METRICS_PORT"] = str(self.settings.metrics_ports[slot.index])
        if self.settings.probe:
            argv = [sys.executable, "-m", "daemon.loadtest.probe", "--latency-out", str(latency)]
            slot.latency_files.append(latency)
        else:
            argv = [sys.executable, "-m", "daemon", "run"]
        child = spawn(stem, argv, env=clean_env(env), log_path=log, cwd=self.log_dir)
        slot.child = child
        slot.logs.append(log)
        self.children.append(child)
        self.sampler.watch_child("sender", child)
        return child

    async def start(self, deadline: float) -> None:
        for slot in self.slots:
            self._spawn(slot)
        await self._wait_ready([s.child for s in self.slots if s.child], deadline)

    async def kill_and_restart(self, index: int, deadline: float) -> None:
        """SIGKILL one daemon (no drain, no flush: a crash) and start a new one in its place."""
        slot = self.slots[index]
        if slot.child is not None:
            self.kills.append(time.time())
            await kill(slot.child)
        child = self._spawn(slot)
        await self._wait_ready([child], deadline)

    async def stop(self, timeout_s: float = 40.0) -> list[int]:
        """SIGTERM every running daemon together; their exit codes."""
        running = [s.child for s in self.slots if s.child is not None and s.child.running]
        infos = await asyncio.gather(*(stop(child, timeout_s) for child in running))
        return [info.returncode for info in infos]

    async def _wait_ready(self, children: list[Child], deadline: float) -> None:
        """Until each child has registered its heartbeat row (it is about to claim)."""
        pids = {c.pid: c for c in children}
        limit = min(deadline, time.monotonic() + READY_TIMEOUT_S)
        conn = await asyncpg.connect(self.settings.dsn)
        try:
            while True:
                rows = await conn.fetch(query("loadtest_registered_daemons"), list(pids))
                if len(rows) == len(pids):
                    return
                for child in pids.values():
                    if try_reap(child) is not None:
                        raise WaSenderError(
                            f"daemon {child.name} exited with code {child.popen.returncode}"
                            f" at startup (see {child.log_path})"
                        )
                if time.monotonic() > limit:
                    raise WaSenderError("the daemons did not start in time")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def latency_files(self) -> list[Path]:
        return [p for s in self.slots for p in s.latency_files]

    def log_files(self) -> list[Path]:
        return [p for s in self.slots for p in s.logs]


async def chaos_loop(
    fleet: DaemonFleet, every_s: float, stop_event: asyncio.Event, deadline: float
) -> None:
    """Every ``every_s`` seconds of a daemon's life, SIGKILL one (round robin), restart it."""
    turn = 0
    while not stop_event.is_set():
        try:
            await asyncio.wait_for(stop_event.wait(), every_s)
            return
        except TimeoutError:
            pass
        await fleet.kill_and_restart(turn % len(fleet.slots), deadline)
        turn += 1
