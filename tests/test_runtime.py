"""TaskOwner: the one owner of the daemon's and the webhook service's background tasks."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from daemon.engine.runtime import TaskOwner


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_a_task_that_fails_sets_stop_and_is_named_in_failed() -> None:
    stop = asyncio.Event()
    owner = TaskOwner(stop)

    async def broken() -> None:
        raise RuntimeError("boom")

    with capture_logs() as logs:
        owner.start("steady", _forever())
        owner.start("broken", broken())
        await asyncio.wait_for(stop.wait(), timeout=5)
    await owner.cancel_all()
    assert owner.failed == ["broken"]
    died = [e for e in logs if e["event"] == "task_died"]
    assert died == [
        {
            "event": "task_died",
            "task": "broken",
            "error": "RuntimeError('boom')",
            "log_level": "error",
        }
    ]


async def test_a_task_that_returns_before_stop_counts_as_died() -> None:
    stop = asyncio.Event()
    owner = TaskOwner(stop)

    async def quits() -> None:
        return None

    with capture_logs() as logs:
        owner.start("quits", quits())
        await asyncio.wait_for(stop.wait(), timeout=5)
    assert owner.failed == ["quits"]
    assert [e["error"] for e in logs if e["event"] == "task_died"] == ["returned"]


async def test_a_task_that_returns_after_stop_is_not_a_failure() -> None:
    stop = asyncio.Event()
    owner = TaskOwner(stop)

    async def until_stop() -> None:
        await stop.wait()

    task = owner.start("until_stop", until_stop())
    stop.set()
    await task
    assert owner.failed == []


async def test_cancel_all_stops_tasks_last_started_first() -> None:
    owner = TaskOwner(asyncio.Event())
    stopped: list[str] = []

    def recording(name: str) -> asyncio.Task[None]:
        async def body() -> None:
            try:
                await _forever()
            finally:
                stopped.append(name)

        return owner.start(name, body())

    tasks = [recording(name) for name in ("first", "second", "third")]
    await asyncio.sleep(0)  # let each task reach its wait
    await owner.cancel_all()
    assert stopped == ["third", "second", "first"]
    assert all(t.cancelled() for t in tasks)
    assert owner.failed == []


async def test_cancel_all_cancels_again_a_task_that_swallowed_one_cancellation() -> None:
    owner = TaskOwner(asyncio.Event())
    cancellations = 0

    async def stubborn() -> None:
        nonlocal cancellations
        while True:
            try:
                await _forever()
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations >= 2:
                    raise

    owner.start("stubborn", stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(owner.cancel_all(), timeout=5)
    assert cancellations == 2
