"""The in-process bus: fan-out, backpressure, and a close that drains instead of dropping.

No test sleeps to wait: tasks are driven with ``asyncio.sleep(0)`` loops bounded by a
count, so a hang fails fast and a pass does not depend on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.helpers import run
from trellis.bus import InProcessBus, InProcessSubscription, SubscriberStats
from trellis.core.errors import ClosedError

#: Enough turns of the event loop for any task here to reach its next real wait.
TURNS = 20


async def _turns(n: int = TURNS) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _collect(subscription: InProcessSubscription[int]) -> list[Sequence[int]]:
    return [batch async for batch in subscription]


def test_fan_out_to_every_subscriber_in_order() -> None:
    """Every subscriber receives every batch, in publish order."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=8)
        subscribers = [bus.subscribe(name) for name in ("store", "rules", "twins")]
        batches = [[1, 2], [3], [4, 5, 6]]
        for batch in batches:
            await bus.publish(batch)
        bus.close()
        for subscriber in subscribers:
            assert await _collect(subscriber) == batches
        assert [s.delivered_items for s in bus.stats()] == [6, 6, 6]

    run(scenario())


def test_subscriber_sees_only_batches_published_after_it_subscribed() -> None:
    """A late subscriber starts with the next batch, not the history."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus()
        early = bus.subscribe("early")
        await bus.publish([1])
        late = bus.subscribe("late")
        await bus.publish([2])
        bus.close()
        assert await _collect(early) == [[1], [2]]
        assert await _collect(late) == [[2]]

    run(scenario())


def test_publish_waits_while_a_subscriber_queue_is_full() -> None:
    """A full queue holds publish pending (counted in publisher_waits) until the consumer reads."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=1)
        subscriber = bus.subscribe("slow")
        await bus.publish([1])
        assert bus.stats()[0].queued == 1

        blocked = asyncio.create_task(bus.publish([2]), name="blocked-publish")
        await _turns()
        assert not blocked.done()
        assert bus.stats()[0].publisher_waits == 1

        batches = aiter(subscriber)
        assert await anext(batches) == [1]
        for _ in range(TURNS):
            if blocked.done():
                break
            await asyncio.sleep(0)
        assert blocked.done()
        await blocked
        assert await anext(batches) == [2]
        bus.close()
        with pytest.raises(StopAsyncIteration):
            await anext(batches)

    run(scenario())


def test_slow_subscriber_holds_back_the_others() -> None:
    """Fan-out is lockstep: one full subscriber makes publish wait for every subscriber."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=1)
        fast, slow = bus.subscribe("fast"), bus.subscribe("slow")
        await bus.publish([1])
        fast_batches = aiter(fast)
        assert await anext(fast_batches) == [1]
        blocked = asyncio.create_task(bus.publish([2]), name="blocked-publish")
        await _turns()
        assert not blocked.done()
        assert [s.publisher_waits for s in bus.stats()] == [0, 1]
        assert await anext(aiter(slow)) == [1]
        await asyncio.wait_for(blocked, timeout=5)

    run(scenario())


def test_close_drains_queued_batches_then_ends() -> None:
    """Batches queued before close are still delivered; then iteration stops."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=4)
        subscriber = bus.subscribe("s")
        await bus.publish([1])
        await bus.publish([2])
        bus.close()
        assert await _collect(subscriber) == [[1], [2]]

    run(scenario())


def test_close_drains_a_full_queue_then_ends() -> None:
    """A queue that is full at close (no room for the end marker) is drained, then ends."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=2)
        subscriber = bus.subscribe("s")
        await bus.publish([1])
        await bus.publish([2])
        assert bus.stats()[0].queued == bus.stats()[0].capacity
        bus.close()
        assert await asyncio.wait_for(_collect(subscriber), timeout=5) == [[1], [2]]

    run(scenario())


def test_close_wakes_a_waiting_subscriber() -> None:
    """A subscriber blocked on an empty queue ends when the bus closes."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus()
        subscriber = bus.subscribe("idle")
        consumer = asyncio.create_task(_collect(subscriber), name="idle-consumer")
        await _turns()
        assert not consumer.done()
        bus.close()
        assert await asyncio.wait_for(consumer, timeout=5) == []

    run(scenario())


def test_publish_after_close_raises() -> None:
    """publish (and subscribe) on a closed bus raise ClosedError; close twice is harmless."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus()
        bus.subscribe("s")
        bus.close()
        bus.close()
        with pytest.raises(ClosedError):
            await bus.publish([1])
        with pytest.raises(ClosedError):
            bus.subscribe("late")

    run(scenario())


def test_empty_batch_is_not_delivered() -> None:
    """Publishing an empty batch delivers nothing and counts nothing."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus()
        subscriber = bus.subscribe("s")
        await bus.publish([])
        await bus.publish([7])
        await bus.publish([])
        bus.close()
        assert await _collect(subscriber) == [[7]]
        assert bus.stats() == [
            SubscriberStats(
                name="s",
                queued=0,
                capacity=64,
                delivered_batches=1,
                delivered_items=1,
                publisher_waits=0,
            )
        ]

    run(scenario())


def test_capacity_must_be_positive() -> None:
    """A bus without room for one batch is refused."""
    with pytest.raises(ValueError, match="capacity"):
        InProcessBus(capacity=0)


def test_close_during_blocked_publish_delivers_to_every_subscriber() -> None:
    """A publish already waiting for room when close() runs still reaches every subscriber."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=1)
        full, idle = bus.subscribe("full"), bus.subscribe("idle")
        await bus.publish([1])
        idle_batches = aiter(idle)
        assert await anext(idle_batches) == [1]
        blocked = asyncio.create_task(bus.publish([2]), name="blocked-publish")
        await _turns()
        bus.close()
        assert await _collect(full) == [[1], [2]]
        assert [batch async for batch in idle_batches] == [[2]]
        await asyncio.wait_for(blocked, timeout=5)

    run(scenario())


def test_cancelled_blocked_publish_still_lets_subscribers_end() -> None:
    """Cancelling a publish that was waiting at close does not leave subscribers hanging."""

    async def scenario() -> None:
        bus: InProcessBus[int] = InProcessBus(capacity=1)
        subscriber = bus.subscribe("s")
        await bus.publish([1])
        blocked = asyncio.create_task(bus.publish([2]), name="blocked-publish")
        await _turns()
        bus.close()
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await asyncio.wait_for(_collect(subscriber), timeout=5) == [[1]]

    run(scenario())
