"""The ingest pipeline: raw messages in, readings stored and published, nothing lost.

Sources (the simulator, HTTP, later MQTT) put raw messages on one bounded queue and
wait when it is full. One worker takes them in batches, decodes them
(:mod:`trellis.ingest.decode`), writes readings and quarantine entries from one
writer thread, and only then publishes the readings on the bus. A message counts
as taken once its batch has committed: ``submit_and_wait`` returns at that point,
which is the acknowledgement a protocol adapter needs before it acks to a device;
``submit_then`` calls back at that point instead, so an adapter with thousands of
messages in flight (MQTT) needs no future and no task per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from trellis.bus.base import Bus
from trellis.core.config import IngestSettings
from trellis.core.errors import ClosedError, WriteRefusedError
from trellis.core.retry import retry_until_done
from trellis.core.types import RawMessage, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.archive import Archive, ArchiveEntry, archive_entry
from trellis.ingest.decode import Limits, Rejection, decode_telemetry
from trellis.ingest.quarantine import Quarantine
from trellis.store.base import TimeSeriesStore

__all__ = ["IngestPipeline", "IngestResult", "IngestStats"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")


class IngestResult(msgspec.Struct, frozen=True):
    """The outcome of one message: readings taken, or the quarantine reason.

    ``seq`` is the device's sequence number of the message, when it carried one.
    """

    message_id: str
    readings: int
    quarantined: bool
    reason: str | None = None
    seq: int | None = None


class IngestStats(msgspec.Struct, frozen=True):
    """Counters since start; ``duplicates`` are readings whose key was already stored."""

    messages: int
    readings: int
    stored: int
    duplicates: int
    quarantined: int
    batches: int
    queued: int
    capacity: int
    source_waits: int
    write_retries: int


@dataclass
class _Counters:
    messages: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batches: int = 0
    source_waits: int = 0
    write_retries: int = 0


_Done = Callable[[IngestResult], object]
_Item = tuple[RawMessage, "asyncio.Future[IngestResult] | _Done | None"]


class IngestPipeline:
    """Bounded queue → batch decode → durable write → bus."""

    def __init__(
        self,
        store: TimeSeriesStore,
        registry: DeviceRegistry,
        quarantine: Quarantine,
        bus: Bus[Reading],
        settings: IngestSettings,
        archive: Archive | None = None,
    ) -> None:
        self._store = store
        self._archive = archive
        self._registry = registry
        self._quarantine = quarantine
        self._bus = bus
        self._settings = settings
        self._limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_skew_ms=int(settings.max_future_skew_s * 1000),
            max_past_age_ms=int(settings.max_past_age_s * 1000),
        )
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(settings.queue_size)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trellis-writer")
        self._archiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trellis-archiver")
        self._closed = False
        self._counters = _Counters()

    @property
    def limits(self) -> Limits:
        """The bounds every message is checked against."""
        return self._limits

    async def submit(self, raw: RawMessage) -> None:
        """Queue a message, waiting while the queue is full (backpressure)."""
        await self._put((raw, None))

    async def submit_and_wait(self, raw: RawMessage) -> IngestResult:
        """Queue a message and wait until it is stored or quarantined."""
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        await self._put((raw, future))
        return await future

    async def submit_then(self, raw: RawMessage, done: _Done) -> None:
        """Queue a message; ``done`` runs on the event loop once it is stored or quarantined.

        Callbacks run in submission order, batch after batch, which is the order MQTT
        wants acknowledgements in.
        """
        await self._put((raw, done))

    async def _put(self, item: _Item) -> None:
        if self._closed:
            raise ClosedError("the ingest pipeline is closed")
        if self._queue.full():
            self._counters.source_waits += 1
        await self._queue.put(item)

    def stats(self) -> IngestStats:
        """Counters and queue depth right now."""
        c = self._counters
        return IngestStats(
            messages=c.messages,
            readings=c.readings,
            stored=c.stored,
            duplicates=c.duplicates,
            quarantined=c.quarantined,
            batches=c.batches,
            queued=self._queue.qsize(),
            capacity=self._settings.queue_size,
            source_waits=c.source_waits,
            write_retries=c.write_retries,
        )

    async def close(self) -> None:
        """Refuse new messages; :meth:`run` drains the queue and returns."""
        if not self._closed:
            self._closed = True
            await self._queue.put(None)

    async def run(self) -> None:
        """Process batches until closed and drained."""
        try:
            while True:
                batch, ended = await self._next_batch()
                if batch:
                    await self._process(batch)
                if ended:
                    return
        finally:
            self._writer.shutdown(wait=True)
            self._archiver.shutdown(wait=True)

    async def _next_batch(self) -> tuple[list[_Item], bool]:
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self._settings.batch_wait_ms / 1000
        while len(batch) < self._settings.batch_max:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    async with asyncio.timeout(timeout):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _process(self, batch: list[_Item]) -> None:
        decoded_ok: list[tuple[int, list[Reading]]] = []
        rejected: list[tuple[RawMessage, str, str | None, str | None]] = []
        outcomes: list[IngestResult] = []
        archived: list[ArchiveEntry] = []
        keep = self._archive is not None
        lookup = self._registry.get
        models = self._registry.models
        for raw, _ in batch:
            try:
                decoded: list[Reading] | Rejection = decode_telemetry(
                    raw, lookup, models, self._limits
                )
            except Exception as exc:  # a decoder bug must cost one message, not the pipeline
                log.exception("decoding %s failed", raw.id)
                decoded = Rejection(f"internal error while decoding: {exc!r}")
            if isinstance(decoded, Rejection):
                rejected.append((raw, decoded.reason, decoded.tenant, decoded.contract))
                outcomes.append(IngestResult(raw.id, 0, True, decoded.reason))
            else:
                decoded_ok.append((len(outcomes), decoded))
                if keep:
                    entry = archive_entry(raw, decoded, lookup, models)
                    if entry is not None:
                        archived.append(entry)
                seq = decoded[0].seq if decoded else None
                outcomes.append(IngestResult(raw.id, len(decoded), False, seq=seq))

        inserted, refused = await self._write(decoded_ok, archived)
        groups = dict(decoded_ok)
        for index, reason in refused:  # kept whole, with the store's error as the reason
            raw, group = batch[index][0], groups[index]
            rejected.append((raw, reason, group[0].tenant if group else None, None))
            outcomes[index] = IngestResult(raw.id, 0, True, reason)
        taken = {index for index, _ in refused}
        readings = [r for index, group in decoded_ok if index not in taken for r in group]
        await self._until_written(self._quarantine.add, rejected)
        c = self._counters
        c.batches += 1
        c.messages += len(batch)
        c.readings += len(readings)
        c.stored += inserted
        c.duplicates += len(readings) - inserted
        c.quarantined += len(rejected)

        if readings:
            with contextlib.suppress(ClosedError):
                await self._bus.publish(readings)
        for (_, waiter), outcome in zip(batch, outcomes, strict=True):
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(outcome)
            elif waiter is not None:
                try:
                    waiter(outcome)
                except Exception:  # one adapter's bug must not stall the pipeline
                    log.exception("ingest completion callback failed for %s", outcome.message_id)

    async def _write(
        self, messages: list[tuple[int, list[Reading]]], archived: list[ArchiveEntry]
    ) -> tuple[int, list[tuple[int, str]]]:
        # The archive is another database file: its write runs beside the readings'
        # write (SQLite releases the GIL while it works), and both commit before the ack.
        # It keeps every message that decoded; one the store then refuses is also in
        # quarantine, with the store's reason.
        archiving = None
        if self._archive is not None and archived:
            archiving = asyncio.create_task(
                self._until_written(self._archive.add, archived, thread=self._archiver),
                name="trellis.ingest.archive",
            )
        try:
            return await self._store_messages(messages)
        finally:
            if archiving is not None:
                await archiving

    async def _store_messages(
        self, messages: list[tuple[int, list[Reading]]], *, give_up_after: int = 3
    ) -> tuple[int, list[tuple[int, str]]]:
        """Store the readings of ``(batch index, readings)`` messages; return how many were
        inserted and the ``(batch index, reason)`` of each message the store refused.

        A lost connection is retried until written. A batch the store keeps refusing
        (a constraint, a trigger) is split in halves, recursively, so the good messages
        are stored and only the refused ones, whole, go to quarantine: ingest never
        stalls on one bad row, and log2(batch) extra writes find it.
        """
        if not messages:
            return 0, []
        readings = [r for _, group in messages for r in group]
        try:
            result = await self._until_written(
                self._store.write, readings, give_up_after=give_up_after
            )
        except WriteRefusedError as exc:
            if len(messages) == 1:
                log.warning("store refused message at batch index %d: %s", messages[0][0], exc)
                return 0, [(messages[0][0], f"refused by the time-series store: {exc}")]
            half = len(messages) // 2
            # The halves are already known to hold a refused row: no second chance needed.
            first = await self._store_messages(messages[:half], give_up_after=1)
            second = await self._store_messages(messages[half:], give_up_after=1)
            return first[0] + second[0], first[1] + second[1]
        for refused in result.rejected:
            # decode_telemetry checks what the store checks, so this is a bug upstream.
            log.error("store refused %r: %s", refused.reading, refused.reason)
        return result.inserted, []

    async def _until_written(
        self,
        write: Callable[[_T], _R],
        rows: _T,
        *,
        thread: ThreadPoolExecutor | None = None,
        give_up_after: int = 0,
    ) -> _R:
        """Run ``write(rows)`` on the writer thread (or ``thread``) until it succeeds; with
        ``give_up_after``, raise once the store refused the rows that many times in a row."""
        loop = asyncio.get_running_loop()
        executor = self._writer if thread is None else thread

        def count_retry() -> None:
            self._counters.write_retries += 1

        return await retry_until_done(
            lambda: loop.run_in_executor(executor, write, rows),
            what="storage write",
            logger=log,
            on_retry=count_retry,
            give_up_on=(WriteRefusedError,) if give_up_after else (),
            give_up_after=give_up_after or 1,
        )
