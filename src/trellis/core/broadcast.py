"""Fan-out to live viewers, where the newest value matters more than every value.

Unlike the bus, a broadcaster never slows its publisher: each listener has a small
bounded queue, and when a listener falls behind (a browser tab on a slow phone) its
oldest undelivered item is dropped and counted. Publishing is safe from any thread,
because alerts are written from worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

__all__ = ["Broadcaster", "Listener"]

T = TypeVar("T")


class Listener(Generic[T]):
    """One viewer's queue; iterate it, and close it when the viewer leaves."""

    def __init__(self, owner: Broadcaster[T], capacity: int) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[T] = asyncio.Queue(capacity)
        self.dropped = 0

    def _offer(self, item: T) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def get(self) -> T:
        """The next item, waiting for one."""
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            yield await self._queue.get()

    def close(self) -> None:
        """Stop receiving."""
        self._owner._listeners.discard(self)

    def __enter__(self) -> Listener[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Broadcaster(Generic[T]):
    """Deliver each item to every current listener, dropping the oldest for slow ones."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._listeners: set[Listener[T]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def listen(self) -> Listener[T]:
        """A new listener; call from the event loop that will read it."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        listener = Listener(self, self._capacity)
        self._listeners.add(listener)
        return listener

    @property
    def listeners(self) -> int:
        """How many listeners are attached."""
        return len(self._listeners)

    def publish(self, item: T) -> None:
        """Deliver ``item``; call from the event loop's thread."""
        for listener in list(self._listeners):
            listener._offer(item)

    def publish_threadsafe(self, item: T) -> None:
        """Deliver ``item`` from any thread; a no-op while nobody listens."""
        loop = self._loop
        if loop is None or not self._listeners or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:  # on the loop already: no wake-up
            self.publish(item)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between check and call
            loop.call_soon_threadsafe(self.publish, item)
