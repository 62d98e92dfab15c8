"""The bus interface: batches fan out to named subscribers, with backpressure.

In-process by default; NATS JetStream at scale implements the same two methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeVar

import msgspec

__all__ = ["Bus", "SubscriberStats", "Subscription"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class SubscriberStats(msgspec.Struct, frozen=True):
    """What a subscriber's queue looks like right now, for dashboards and tests."""

    name: str
    queued: int
    capacity: int
    delivered_batches: int
    delivered_items: int
    publisher_waits: int


class Subscription(Protocol[T_co]):
    """An async iterator of batches that ends when the bus is closed and drained."""

    name: str

    def __aiter__(self) -> AsyncIterator[Sequence[T_co]]: ...


class Bus(Protocol[T]):
    """Fan-out of batches to every subscriber; ``publish`` waits while one is full."""

    def subscribe(self, name: str) -> Subscription[T]:
        """A new subscriber that sees every batch published from now on."""
        ...

    async def publish(self, batch: Sequence[T]) -> None:
        """Deliver to every subscriber, waiting for room; raises ``ClosedError`` once closed."""
        ...

    def stats(self) -> list[SubscriberStats]:
        """One line per subscriber."""
        ...

    def close(self) -> None:
        """Refuse further publishes; subscribers drain what is queued, then stop."""
        ...
