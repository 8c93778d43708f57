"""Send slots: a counting semaphore whose free take is a plain call, FIFO for waiters."""

from __future__ import annotations

import asyncio

import pytest

from daemon.engine.slots import Slots


def test_try_take_takes_free_slots_only() -> None:
    slots = Slots(2)
    assert slots.try_take() and slots.try_take()
    assert not slots.try_take()
    assert slots.free == 0
    slots.give()
    assert slots.free == 1 and slots.try_take()


def test_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Slots(0)


async def test_waiters_are_served_in_order_and_newcomers_do_not_overtake() -> None:
    slots = Slots(1)
    assert slots.try_take()
    served: list[int] = []

    async def waiter(n: int) -> None:
        await slots.take()
        served.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    slots.give()  # handed to waiter 0, not left free for anyone
    assert slots.free == 0 and not slots.try_take()
    await asyncio.sleep(0)
    slots.give()
    await asyncio.sleep(0)
    slots.give()
    await asyncio.gather(*tasks)
    assert served == [0, 1, 2]
    slots.give()
    assert slots.free == 1


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    slots.give()
    await asyncio.wait_for(second, 1.0)  # the slot went to the one still waiting
    slots.give()
    assert slots.free == 1


async def test_a_slot_handed_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give()  # first is handed the slot ...
    first.cancel()  # ... and cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    await asyncio.wait_for(second, 1.0)
    slots.give()
    assert slots.free == 1  # no slot lost, none made up
