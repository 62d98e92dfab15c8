"""The in-process bus: one bounded ``asyncio.Queue`` of batches per subscriber.

A full queue makes ``publish`` wait, and the wait propagates to the ingest pipeline
and from there to the sources: memory stays bounded, and the slowdown is counted in
``publisher_waits`` instead of hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Generic, TypeVar

from trellis.bus.base import SubscriberStats
from trellis.core.errors import ClosedError

__all__ = ["InProcessBus", "InProcessSubscription"]

T = TypeVar("T")
_END = object()


class InProcessSubscription(Generic[T]):
    """A subscriber's end of the bus."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self._queue: asyncio.Queue[Sequence[T] | object] = asyncio.Queue(capacity)
        self._capacity = capacity
        self.delivered_batches = 0
        self.delivered_items = 0
        self.publisher_waits = 0
        self._ended = False

    async def _put(self, batch: Sequence[T] | object) -> None:
        if self._queue.full():
            self.publisher_waits += 1
        await self._queue.put(batch)

    def _end(self) -> None:
        self._ended = True
        # A full queue means the subscriber is busy, not waiting: it sees ``_ended``
        # once it has drained the queue.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)

    async def __aiter__(self) -> AsyncIterator[Sequence[T]]:
        while True:
            if self._ended and self._queue.empty():
                return
            item = await self._queue.get()
            if item is _END:
                return
            batch: Sequence[T] = item  # type: ignore[assignment]  # only _END is not a batch
            self.delivered_batches += 1
            self.delivered_items += len(batch)
            yield batch

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self.name,
            queued=self._queue.qsize(),
            capacity=self._capacity,
            delivered_batches=self.delivered_batches,
            delivered_items=self.delivered_items,
            publisher_waits=self.publisher_waits,
        )


class InProcessBus(Generic[T]):
    """Fan-out of batches inside one event loop."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._subscribers: list[InProcessSubscription[T]] = []
        self._closed = False
        self._publishing = 0

    def subscribe(self, name: str) -> InProcessSubscription[T]:
        if self._closed:
            raise ClosedError(f"cannot subscribe {name!r}: the bus is closed")
        subscription: InProcessSubscription[T] = InProcessSubscription(name, self._capacity)
        self._subscribers.append(subscription)
        return subscription

    async def publish(self, batch: Sequence[T]) -> None:
        if self._closed:
            raise ClosedError("cannot publish: the bus is closed")
        if not batch:
            return
        # A publish that got past the check above is accepted: close() leaves ending the
        # subscribers to it, or its batch could land behind their end and be lost.
        self._publishing += 1
        try:
            for subscriber in self._subscribers:
                await subscriber._put(batch)
        finally:
            self._publishing -= 1
            if self._closed and not self._publishing:
                self._end_subscribers()

    def stats(self) -> list[SubscriberStats]:
        return [subscriber.stats() for subscriber in self._subscribers]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._publishing:
            self._end_subscribers()

    def _end_subscribers(self) -> None:
        for subscriber in self._subscribers:
            subscriber._end()
