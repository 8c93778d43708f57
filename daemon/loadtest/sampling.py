"""CPU and memory of the measured processes, sampled with psutil every 0.2 s.

Processes are watched in named groups (``sender``: the daemons, the floor or the PgQueuer
worker; ``mock``; ``postgres``). A group's CPU time is cumulative over its members, including
members that already exited (their final figures come from ``wait4``), so chaos restarts do
not lose time. Peak RSS is kept per process and for the group's sum at each sample.

Run-queue wait is the time a process stood runnable without a core (Linux's
``/proc/PID/schedstat``, its main thread, where the event loop runs): on a machine whose cores
the processes share, what each lost to the others. A member's last sample stands for it after
it exits (wait4 does not report it); PostgreSQL's counts its live backends only; elsewhere than
Linux it is None.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from daemon.loadtest.processes import Child, try_reap

SAMPLE_EVERY_S = 0.2
MB = 1024 * 1024


@dataclass
class _Member:
    label: str
    process: psutil.Process
    child: Child | None  # None: not ours (postgres), no wait4
    tree: bool  # include its children (postgres backends)
    base_cpu_s: float = 0.0  # what it had used before it was watched
    cpu_s: float = 0.0  # total, including base_cpu_s
    base_wait_s: float = 0.0
    wait_s: float | None = None  # run-queue wait, total; None: not readable here
    peak_rss: int = 0
    final: bool = False


@dataclass
class Group:
    name: str
    members: list[_Member] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    wait_s: list[float | None] = field(default_factory=list)
    peak_rss_sum: int = 0

    def cpu_total(self) -> float:
        return sum(m.cpu_s - m.base_cpu_s for m in self.members)

    def wait_total(self) -> float | None:
        waits = [m.wait_s - m.base_wait_s for m in self.members if m.wait_s is not None]
        return sum(waits) if waits else None

    def peak_rss_process(self) -> int:
        return max((m.peak_rss for m in self.members), default=0)

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used from ``start`` to ``end`` (epoch), read from the nearest samples."""
        if not self.t:
            return None
        return self.cpu_s[self._index(end)] - self.cpu_s[self._index(start)]

    def wait_between(self, start: float, end: float) -> float | None:
        """Run-queue wait from ``start`` to ``end`` (epoch), read like ``cpu_between``."""
        if not self.t:
            return None
        first, last = self.wait_s[self._index(start)], self.wait_s[self._index(end)]
        return None if first is None or last is None else last - first

    def _index(self, moment: float) -> int:
        """The first sample at or after ``moment`` (the last one, past the end)."""
        return min(bisect.bisect_left(self.t, moment), len(self.t) - 1)

    def summary(self, t0: float, t_end: float) -> dict[str, Any]:
        """Totals, CPU within [t0, t_end], and per-second series (CPU % of one core, RSS MB)."""
        series_t: list[float] = []
        cpu_pct: list[float] = []
        rss_mb: list[float] = []
        last_t: float | None = None
        last_cpu = 0.0
        for t, cpu, rss in zip(self.t, self.cpu_s, self.rss, strict=True):
            if last_t is not None and t - last_t < 1.0:
                continue
            if last_t is not None:
                series_t.append(round(t - t0, 2))
                cpu_pct.append(round(100.0 * (cpu - last_cpu) / (t - last_t), 1))
                rss_mb.append(round(rss / MB, 1))
            last_t, last_cpu = t, cpu
        exits = [m.child.exit for m in self.members if m.child is not None and m.child.exit]
        during = self.cpu_between(t0, t_end)
        wait, wait_during = self.wait_total(), self.wait_between(t0, t_end)
        return {
            "processes": len(self.members),
            "cpu_s": round(self.cpu_total(), 3),
            "cpu_s_during_run": None if during is None else round(during, 3),
            "cpu_user_s": round(sum(e.cpu_user_s for e in exits), 3) if exits else None,
            "cpu_system_s": round(sum(e.cpu_system_s for e in exits), 3) if exits else None,
            "runqueue_wait_s": None if wait is None else round(wait, 3),
            "runqueue_wait_s_during_run": None if wait_during is None else round(wait_during, 3),
            "peak_rss_mb": round(self.peak_rss_process() / MB, 1),
            "peak_rss_sum_mb": round(self.peak_rss_sum / MB, 1),
            "series": {"t": series_t, "cpu_pct": cpu_pct, "rss_mb": rss_mb},
        }


def runqueue_wait_s(pid: int) -> float | None:
    """Seconds the process's main thread has stood runnable without a core, or None (gone, or
    not Linux). ``/proc/PID/schedstat``: time on a core, time waiting for one (both ns),
    timeslices."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _high_water(member: _Member) -> int:
    """The process's peak RSS so far (VmHWM): exact even between two samples."""
    try:
        with open(f"/proc/{member.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class ProcessSampler:
    def __init__(
        self, interval_s: float = SAMPLE_EVERY_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.interval_s = interval_s
        self.groups: dict[str, Group] = {}
        self._clock = clock
        # The whole machine's busy CPU seconds at each sample: what else ran meanwhile.
        self.machine = Group("machine")

    def group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group(name))

    def watch_child(self, group: str, child: Child) -> None:
        """Watch a child from its start: all of its CPU time counts."""
        try:
            process = psutil.Process(child.pid)
        except psutil.Error:
            process = None
        if process is None:
            return
        self.group(group).members.append(_Member(child.name, process, child, tree=False))

    def watch_pid(self, group: str, pid: int, label: str, *, tree: bool = True) -> bool:
        """Watch a process that is not ours (the database server) from now on."""
        try:
            process = psutil.Process(pid)
        except psutil.Error:
            return False
        member = _Member(label, process, None, tree)
        if self._sample_member(member) is None:
            return False
        member.base_cpu_s = member.cpu_s
        member.base_wait_s = member.wait_s or 0.0
        self.group(group).members.append(member)
        return True

    def sample(self) -> None:
        now = self._clock()
        times = psutil.cpu_times()
        self.machine.t.append(now)
        self.machine.cpu_s.append(
            times.user
            + times.system
            + getattr(times, "irq", 0.0)
            + getattr(times, "softirq", 0.0)
            + getattr(times, "nice", 0.0)
            + getattr(times, "steal", 0.0)
        )
        self.machine.rss.append(0)
        self.machine.wait_s.append(None)
        for group in self.groups.values():
            rss_sum = 0
            for member in group.members:
                rss_sum += self._sample_member(member) or 0
            group.t.append(now)
            group.cpu_s.append(group.cpu_total())
            group.wait_s.append(group.wait_total())
            group.rss.append(rss_sum)
            group.peak_rss_sum = max(group.peak_rss_sum, rss_sum)

    def _sample_member(self, member: _Member) -> int | None:
        """Update the member; its RSS now, or None when it is gone."""
        if member.final:
            return None
        child = member.child
        if child is not None and try_reap(child) is not None:
            # CPU from wait4 is exact. Its ru_maxrss is not: Linux carries the parent's
            # high-water mark across fork+exec, so peaks come from VmHWM samples instead.
            assert child.exit is not None
            member.cpu_s = max(member.cpu_s, child.exit.cpu_s)
            member.final = True
            return None
        try:
            with member.process.oneshot():
                times = member.process.cpu_times()
                rss = int(member.process.memory_info().rss)
            cpu = times.user + times.system
            wait = runqueue_wait_s(member.process.pid)
            if member.tree:
                cpu += times.children_user + times.children_system
                for sub in member.process.children(recursive=True):
                    try:
                        sub_times = sub.cpu_times()
                        cpu += sub_times.user + sub_times.system
                        rss += int(sub.memory_info().rss)
                    except psutil.Error:
                        continue
                    sub_wait = runqueue_wait_s(sub.pid)
                    if wait is not None and sub_wait is not None:
                        wait += sub_wait
        except psutil.Error:
            if child is None:
                member.final = True
            return None
        member.cpu_s = max(member.cpu_s, cpu)
        if wait is not None:
            member.wait_s = max(member.wait_s or 0.0, wait)
        member.peak_rss = max(member.peak_rss, rss, 0 if member.tree else _high_water(member))
        return rss

    def machine_summary(self, start: float, end: float) -> dict[str, Any]:
        """CPU used on the whole machine within [start, end], and how much of it was not the
        processes watched here (other users' work competing for the same cores)."""
        busy = self.machine.cpu_between(start, end)
        measured = sum(g.cpu_between(start, end) or 0.0 for g in self.groups.values())
        return {
            "cores": psutil.cpu_count(),
            "busy_cpu_s": None if busy is None else round(busy, 2),
            "measured_cpu_s": round(measured, 2),
            "other_cpu_s": None if busy is None else round(max(0.0, busy - measured), 2),
        }

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass
        self.sample()
