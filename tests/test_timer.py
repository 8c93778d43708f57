import asyncio
import itertools

import pytest

from daemon.db.pool import RETRYABLE_ERRORS
from daemon.engine import timer
from daemon.engine.timer import WakeableTimer


async def test_a_pass_runs_again_at_the_time_it_named() -> None:
    passes: list[float] = []
    loop = asyncio.get_running_loop()

    async def one_pass() -> float:
        passes.append(loop.time())
        return 0.05

    task = asyncio.create_task(WakeableTimer(one_pass, "failed").run())
    await asyncio.sleep(0.23)
    task.cancel()
    assert 2 <= len(passes) <= 6  # not a busy loop, and not one pass only
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(passes))


async def test_wake_runs_the_next_pass_at_once() -> None:
    passes = 0

    async def one_pass() -> float:
        nonlocal passes
        passes += 1
        return 3600.0

    wakeable = WakeableTimer(one_pass, "failed")
    task = asyncio.create_task(wakeable.run())
    await asyncio.sleep(0.02)
    assert passes == 1
    wakeable.wake()
    await asyncio.sleep(0.02)
    task.cancel()
    assert passes == 2


async def test_a_database_error_is_retried_after_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timer, "RETRY_AFTER_S", 0.05)
    calls = 0

    async def one_pass() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RETRYABLE_ERRORS[0]("connection lost")
        return 3600.0

    task = asyncio.create_task(WakeableTimer(one_pass, "failed").run())
    await asyncio.sleep(0.02)
    assert calls == 1
    await asyncio.sleep(0.06)
    task.cancel()
    assert calls == 2


async def test_any_other_error_ends_the_task() -> None:
    async def one_pass() -> float:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await asyncio.wait_for(WakeableTimer(one_pass, "failed").run(), timeout=1)
