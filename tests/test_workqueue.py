import asyncio

import pytest

from daemon.engine.workqueue import WorkQueue


def test_items_come_out_in_the_order_they_were_put() -> None:
    queue: WorkQueue[int] = WorkQueue()
    queue.put_many([1, 2])
    queue.put_many([3])
    assert len(queue) == 3
    assert [queue.items.popleft() for _ in range(3)] == [1, 2, 3]
    assert len(queue) == 0


def test_take_where_removes_the_picked_and_keeps_the_rest_in_order() -> None:
    queue: WorkQueue[int] = WorkQueue()
    queue.put_many(range(1, 8))
    assert queue.take_where(lambda n: n % 3 == 0) == [3, 6]
    assert queue.take_all() == [1, 2, 4, 5, 7]
    assert len(queue) == 0
    assert queue.take_all() == []


async def test_take_waits_for_the_next_batch() -> None:
    queue: WorkQueue[str] = WorkQueue()
    taker = asyncio.create_task(queue.take())
    await asyncio.sleep(0.01)
    assert not taker.done()
    queue.put_many(["a", "b"])
    assert await asyncio.wait_for(taker, 1.0) == "a"
    assert list(queue.items) == ["b"]


async def test_each_waiter_gets_its_own_item_and_the_rest_wait_on() -> None:
    queue: WorkQueue[int] = WorkQueue()
    takers = [asyncio.create_task(queue.take()) for _ in range(3)]
    await asyncio.sleep(0.01)
    queue.put_many([10, 20])
    await asyncio.sleep(0.01)
    done = [t for t in takers if t.done()]
    assert sorted(t.result() for t in done) == [10, 20]
    [waiting] = [t for t in takers if not t.done()]
    queue.put_many([30])
    assert await asyncio.wait_for(waiting, 1.0) == 30


async def test_a_cancelled_take_loses_nothing_and_leaves_no_waiter() -> None:
    queue: WorkQueue[int] = WorkQueue()
    taker = asyncio.create_task(queue.take())
    await asyncio.sleep(0.01)
    taker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert queue._waiters == []
    queue.put_many([1])
    assert await queue.take() == 1


async def test_a_take_cancelled_after_its_wakeup_leaves_the_item_queued() -> None:
    queue: WorkQueue[int] = WorkQueue()
    taker = asyncio.create_task(queue.take())
    await asyncio.sleep(0.01)
    queue.put_many([7])  # wakes the taker, which has not run yet
    taker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert list(queue.items) == [7]
