"""Group commit: many callers' small database changes, one writer thread, one commit.

An operator acknowledging an alert writes two rows; committing them costs more than writing
them (the WAL append and, on PostgreSQL, the round trip and the flush), and handing each
change to a thread pool costs more again (measured: about a third of the server's CPU per
transition went to the hop alone). :class:`GroupCommitter` keeps one thread that takes every
change waiting in its queue, runs them in order in one transaction and commits once, then
answers each caller: an ``await`` from the event loop (no thread-pool hop) or a blocking
call from any other thread. Under load the batch grows by itself; alone, a change commits
at once (no timer, no added latency).

A change is a function of a :class:`sqlalchemy.engine.Connection` that may run twice: when
one change of a batch raises, the transaction is rolled back and every change of the batch
is run again in a transaction of its own, so only the failing caller sees the error and no
caller sees a change committed that was rolled back. Changes must therefore keep their side
effects (notifications, events) for after they return, and read the time before they are
submitted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from trellis.core.errors import ClosedError

__all__ = ["Change", "GroupCommitter"]

T = TypeVar("T")
#: A change: reads and writes through the connection it is given, returns its answer.
Change = Callable[[sa.Connection], T]


@dataclass(slots=True)
class _Job(Generic[T]):
    change: Change[T]
    # Exactly one of the two: an event loop's future, or a future a thread blocks on.
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[T] | None = None
    waiter: concurrent.futures.Future[T] | None = None


class GroupCommitter:
    """One writer thread for ``engine`` that commits queued changes together.

    ``lock`` is held while a batch runs, so writers elsewhere in the process that take the
    same lock (and open their own transactions) never interleave with a batch.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        lock: threading.Lock | None = None,
        max_batch: int = 64,
        name: str = "group-commit",
    ) -> None:
        self._engine = engine
        self._lock = lock or threading.Lock()
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[list[_Job[Any]] | None] = queue.SimpleQueue()
        # Changes of the current event-loop turn, not yet handed to the writer.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        #: How many transactions committed, and how many changes they carried.
        self.commits = 0
        self.changes = 0

    # -- submitting ---------------------------------------------------------------------

    async def run(self, change: Change[T]) -> T:
        """Run ``change`` in the writer thread; its answer (or its exception) once committed.

        The changes submitted during one turn of the event loop go to the writer together,
        at the end of the turn: one wake-up of the writer for all of them."""
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(change, loop, loop.create_future())
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(job)
        assert job.future is not None
        return await job.future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop, [])
        try:
            self._submit(jobs)
        except ClosedError as exc:
            self._deliver(jobs, [(False, exc)] * len(jobs))

    def call(self, change: Change[T]) -> T:
        """The same for a caller that is not on an event loop: blocks until committed."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("a change cannot wait for the writer thread from inside it")
        waiter: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit([_Job(change, waiter=waiter)])
        return waiter.result()

    def _submit(self, jobs: list[_Job[Any]]) -> None:
        if self._closed:
            raise ClosedError(f"{self._name} is closed")
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                    self._thread.start()
        self._queue.put(jobs)

    def close(self) -> None:
        """Finish the changes already queued, then stop the thread."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    # -- the writer thread --------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._batches()
        finally:
            # A change queued while closing: refused, never left waiting.
            late: list[_Job[Any]] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    late += self._queue.get_nowait() or []
            closed = ClosedError(f"{self._name} is closed")
            self._deliver(late, [(False, closed)] * len(late))

    def _batches(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = list(first)
            while len(batch) < self._max_batch:
                try:
                    jobs = self._queue.get_nowait()
                except queue.Empty:
                    break
                if jobs is None:
                    stopping = True
                    break
                batch += jobs
            for start in range(0, len(batch), self._max_batch):
                part = batch[start : start + self._max_batch]
                self._deliver(part, self._execute(part))

    def _execute(self, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        with self._lock:
            try:
                with self._engine.begin() as connection:
                    answers = [(True, job.change(connection)) for job in batch]
                self.commits += 1
                self.changes += len(batch)
                return answers
            except Exception as exc:
                if len(batch) == 1:
                    return [(False, exc)]
            # One change failed and took the batch with it: each alone, so only it fails.
            answers = []
            for job in batch:
                try:
                    with self._engine.begin() as connection:
                        answers.append((True, job.change(connection)))
                    self.commits += 1
                    self.changes += 1
                except Exception as exc:
                    answers.append((False, exc))
            return answers

    @staticmethod
    def _deliver(batch: list[_Job[Any]], answers: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(batch, answers, strict=True):
            if job.waiter is not None:
                if ok:
                    job.waiter.set_result(value)
                else:
                    job.waiter.set_exception(value)
            else:
                assert job.future is not None
                assert job.loop is not None
                by_loop.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, settled in by_loop.items():
            # One wake-up of each loop per batch, not one per change.
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():  # the caller went away (a cancelled request); the change stands
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
