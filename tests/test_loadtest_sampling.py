"""The load-test sampler's run-queue wait: the time a watched process stood runnable without
a core, i.e. what it lost to the other processes on the machine's shared cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from daemon.loadtest.sampling import ProcessSampler, runqueue_wait_s

BUSY_CPU_S = 0.6
BUSY = f"import time\nwhile time.process_time() < {BUSY_CPU_S}: pass\n"


def _busy_on(cpu: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", BUSY], preexec_fn=lambda: os.sched_setaffinity(0, {cpu})
    )


def test_the_wait_of_a_live_process_is_read_and_of_a_gone_one_is_none() -> None:
    wait = runqueue_wait_s(os.getpid())
    assert wait is not None and wait >= 0.0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert runqueue_wait_s(gone.pid) is None


def test_two_busy_processes_sharing_one_core_each_wait_for_it() -> None:
    cpu = min(os.sched_getaffinity(0))
    sampler = ProcessSampler(interval_s=0.05)
    children = [_busy_on(cpu), _busy_on(cpu)]
    t0 = time.time()
    for child in children:
        assert sampler.watch_pid("busy", child.pid, f"busy-{child.pid}", tree=False)
    while any(child.poll() is None for child in children):
        sampler.sample()
        time.sleep(0.05)
    sampler.sample()
    summary = sampler.groups["busy"].summary(t0, time.time())
    # Each needs BUSY_CPU_S on the one core they share, and while one runs the other waits:
    # about 2 x BUSY_CPU_S of waiting in all. The last sample before each exit stands for it,
    # so half of that is the bound.
    assert summary["cpu_s"] >= BUSY_CPU_S
    assert summary["runqueue_wait_s"] >= BUSY_CPU_S
    assert summary["runqueue_wait_s_during_run"] >= BUSY_CPU_S


def test_a_sleeping_process_hardly_waits() -> None:
    sampler = ProcessSampler(interval_s=0.05)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    t0 = time.time()
    assert sampler.watch_pid("sleeper", child.pid, "sleeper", tree=False)
    while child.poll() is None:
        sampler.sample()
        time.sleep(0.05)
    summary = sampler.groups["sleeper"].summary(t0, time.time())
    assert summary["runqueue_wait_s"] is not None
    assert summary["runqueue_wait_s"] < 0.2
