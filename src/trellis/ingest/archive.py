"""The raw message archive: every accepted message kept, compressed, for schema-on-read.

Readings are one interpretation of a message, made with the device model in force
when it arrived. The archive keeps the message itself, so a later mapping version can
re-derive the readings of a past period (:mod:`trellis.ingest.reprocess`) and an
auditor can see the bytes a number came from (:mod:`trellis.lineage`).

Each ingest batch's accepted messages become one **segment**: msgpack-encoded
together and zlib-compressed in one call (telemetry from one fleet compresses far
better as a batch than message by message, and one row per batch keeps the write
cheap). A small index row per message (``archive_messages``) records where it is and
what it became: tenant, device, sequence number, receive time, the span of its
readings' timestamps, the contract (``model@version``) and the vendor mapping that
decoded it. Retention deletes whole segments by receive time.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError, StoreError
from trellis.core.types import Device, RawMessage, Reading
from trellis.devices.models import DeviceModel
from trellis.ingest.decode import JSON
from trellis.store.metadata import archive_messages, archive_segments

__all__ = [
    "CODEC",
    "Archive",
    "ArchiveEntry",
    "ArchiveStats",
    "ArchivedMessage",
    "archive_entry",
    "run_retention",
]

log = logging.getLogger(__name__)

#: How segments are encoded: msgpack list of messages, then zlib.
CODEC = "msgpack+zlib"

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[RawMessage]).decode


class ArchivedMessage(msgspec.Struct, frozen=True):
    """The index row of one archived message: its lineage facts, not its bytes."""

    message_id: str
    tenant: str
    device: str
    seq: int | None
    received_ms: int
    ts_min: int
    ts_max: int
    readings: int
    contract: str
    mapping: str | None
    segment_id: int
    position: int
    reprocessed_ms: int | None = None

    @property
    def mapping_version(self) -> str | None:
        """``model@version#mapping``: the mapping belongs to the model version."""
        return None if self.mapping is None else f"{self.contract}#{self.mapping}"


class ArchiveEntry(msgspec.Struct, frozen=True):
    """A message to archive with what ingest derived from it."""

    message: RawMessage
    tenant: str
    device: str
    seq: int | None
    ts_min: int
    ts_max: int
    readings: int
    contract: str
    mapping: str | None


class ArchiveStats(msgspec.Struct, frozen=True):
    """Size of the archive: messages, segments, bytes before and after compression."""

    messages: int
    segments: int
    raw_bytes: int
    stored_bytes: int
    oldest_received_ms: int | None


def archive_entry(
    raw: RawMessage,
    readings: Sequence[Reading],
    lookup: Callable[[str, str], Device | None],
    models: dict[str, DeviceModel],
) -> ArchiveEntry | None:
    """The archive entry of a message ``decode_telemetry`` accepted (None without readings).

    The mapping is resolved the way the decoder resolves it: the ``mapping`` user
    property, else the device's ``mapping`` attribute, for JSON payloads only.
    """
    if not readings:
        return None
    first = readings[0]
    device = lookup(first.tenant, first.device)
    model = models[device.model] if device is not None else None
    contract = model.key if model is not None else "unknown"
    mapping: str | None = None
    content_type = raw.properties.get("content-type", JSON).split(";", 1)[0].strip().lower()
    if content_type == JSON:
        named = raw.properties.get("mapping") or (
            device.attributes.get("mapping") if device is not None else None
        )
        mapping = None if named is None else str(named)
    ts_min = ts_max = first.ts
    for reading in readings:
        ts = reading.ts
        if ts < ts_min:
            ts_min = ts
        elif ts > ts_max:
            ts_max = ts
    return ArchiveEntry(
        raw, first.tenant, first.device, first.seq, ts_min, ts_max, len(readings), contract, mapping
    )


class Archive:
    """The archive tables of the metadata database."""

    def __init__(self, engine: sa.Engine, *, level: int = 1) -> None:
        self._engine = engine
        self._level = level
        # Plain driver SQL with tuples: SQLAlchemy's per-row dict processing cost more
        # than the insert itself at a thousand index rows per batch. ON CONFLICT DO
        # NOTHING is the same text in SQLite and PostgreSQL; only the marker differs.
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        columns = [c.name for c in archive_messages.c if c.name != "reprocessed_ms"]
        self._insert_index = (
            f"INSERT INTO archive_messages ({', '.join(columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))}) ON CONFLICT DO NOTHING"
        )

    @property
    def engine(self) -> sa.Engine:
        """The metadata database the archive lives in."""
        return self._engine

    def add(self, entries: Sequence[ArchiveEntry]) -> None:
        """Archive ``entries`` as one segment, in one transaction.

        A message id already archived (a redelivery the gateway gave the same id) keeps
        its first index row; its bytes in the new segment are never referenced.
        """
        if not entries:
            return
        messages = [entry.message for entry in entries]
        packed = _encode(messages)
        blob = zlib.compress(packed, self._level)
        received = [m.received_ms for m in messages]
        segment = {
            "first_received_ms": min(received),
            "last_received_ms": max(received),
            "count": len(entries),
            "codec": CODEC,
            "raw_bytes": len(packed),
            "blob": blob,
            "created_ms": now_ms(),
        }
        try:
            with self._engine.begin() as connection:
                segment_id = connection.execute(
                    archive_segments.insert().returning(archive_segments.c.id), segment
                ).scalar_one()
                connection.exec_driver_sql(
                    self._insert_index,
                    [
                        (
                            segment_id,
                            position,
                            e.message.id,
                            e.tenant,
                            e.device,
                            e.seq,
                            e.message.received_ms,
                            e.ts_min,
                            e.ts_max,
                            e.readings,
                            e.contract,
                            e.mapping,
                        )
                        for position, e in enumerate(entries)
                    ],
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"archiving {len(entries)} messages failed: {exc}") from exc

    def get(self, message_id: str) -> ArchivedMessage:
        """The index row of one message, or :class:`NotFoundError`."""
        with self._engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(archive_messages).where(archive_messages.c.message_id == message_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError("archived message", message_id)
        return _archived(row)

    def message(self, entry: ArchivedMessage) -> RawMessage:
        """The original message of an index row, decompressed from its segment."""
        return next(iter(self.messages([entry])))[1]

    def messages(
        self, entries: Iterable[ArchivedMessage]
    ) -> Iterator[tuple[ArchivedMessage, RawMessage]]:
        """Each entry with its original message; each segment is decompressed once."""
        cache: tuple[int, list[RawMessage]] | None = None
        for entry in entries:
            if cache is None or cache[0] != entry.segment_id:
                cache = (entry.segment_id, self._segment(entry.segment_id))
            yield entry, cache[1][entry.position]

    def _segment(self, segment_id: int) -> list[RawMessage]:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(archive_segments.c.codec, archive_segments.c.blob).where(
                    archive_segments.c.id == segment_id
                )
            ).first()
        if row is None:
            raise NotFoundError("archive segment", segment_id)
        if row.codec != CODEC:
            raise StoreError(f"archive segment {segment_id} has unknown codec {row.codec!r}")
        return _decode(zlib.decompress(row.blob))

    def find(
        self,
        tenant: str,
        device: str,
        start: int,
        end: int,
        limit: int = 10_000,
        offset: int = 0,
    ) -> list[ArchivedMessage]:
        """Messages of one device with readings in ``[start, end)``, oldest first."""
        c = archive_messages.c
        query = (
            sa.select(archive_messages)
            .where(c.tenant == tenant, c.device == device, c.ts_min < end, c.ts_max >= start)
            .order_by(c.ts_min, c.segment_id, c.position)
            .limit(limit)
            .offset(offset)
        )
        with self._engine.connect() as connection:
            return [_archived(row) for row in connection.execute(query).mappings()]

    def count(self, tenant: str, device: str, start: int, end: int) -> int:
        """How many messages of one device have readings in ``[start, end)``."""
        c = archive_messages.c
        query = (
            sa.select(sa.func.count())
            .select_from(archive_messages)
            .where(c.tenant == tenant, c.device == device, c.ts_min < end, c.ts_max >= start)
        )
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def holding(self, tenant: str, device: str, ts: int) -> list[ArchivedMessage]:
        """Messages of one device whose readings span ``ts``, newest segment first.

        More than one means the reading was sent twice (a redelivery or a resend); the
        store kept the first, which is the last of this list.
        """
        c = archive_messages.c
        query = (
            sa.select(archive_messages)
            .where(c.tenant == tenant, c.device == device, c.ts_min <= ts, c.ts_max >= ts)
            .order_by(c.ts_min.desc())
            .limit(20)
        )
        with self._engine.connect() as connection:
            rows = [_archived(row) for row in connection.execute(query).mappings()]
        return sorted(rows, key=lambda r: (r.segment_id, r.position), reverse=True)

    def mark_reprocessed(self, message_ids: Sequence[str], contract: str, at_ms: int) -> None:
        """Record that ``message_ids`` were re-derived with ``contract``."""
        if not message_ids:
            return
        try:
            with self._engine.begin() as connection:
                for start in range(0, len(message_ids), 500):
                    connection.execute(
                        archive_messages.update()
                        .where(archive_messages.c.message_id.in_(message_ids[start : start + 500]))
                        .values(contract=contract, reprocessed_ms=at_ms)
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"recording a reprocess failed: {exc}") from exc

    def delete_before(self, before_ms: int) -> int:
        """Retention: delete segments whose newest message arrived before ``before_ms``;
        return how many messages went with them."""
        s = archive_segments.c
        old = sa.select(s.id).where(s.last_received_ms < before_ms).scalar_subquery()
        try:
            with self._engine.begin() as connection:
                deleted = connection.execute(
                    archive_messages.delete().where(archive_messages.c.segment_id.in_(old))
                ).rowcount
                connection.execute(archive_segments.delete().where(s.last_received_ms < before_ms))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"archive retention failed: {exc}") from exc
        return int(deleted or 0)

    def stats(self) -> ArchiveStats:
        """Messages, segments and bytes kept."""
        s = archive_segments.c
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(s.count), 0),
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(s.raw_bytes), 0),
                    sa.func.coalesce(sa.func.sum(sa.func.length(s.blob)), 0),
                    sa.func.min(s.first_received_ms),
                )
            ).one()
        return ArchiveStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4])


def _archived(row: sa.RowMapping) -> ArchivedMessage:
    return ArchivedMessage(
        message_id=row["message_id"],
        tenant=row["tenant"],
        device=row["device"],
        seq=row["seq"],
        received_ms=row["received_ms"],
        ts_min=row["ts_min"],
        ts_max=row["ts_max"],
        readings=row["readings"],
        contract=row["contract"],
        mapping=row["mapping"],
        segment_id=row["segment_id"],
        position=row["position"],
        reprocessed_ms=row["reprocessed_ms"],
    )


async def run_retention(archive: Archive, *, days: float, every_s: float) -> None:
    """Delete segments older than ``days`` now and every ``every_s`` until cancelled.

    A failed pass is logged and tried again at the next interval: retention must not
    take the platform down, and the archive only grows until the next pass.
    """
    while True:
        cutoff = now_ms() - int(days * 86_400_000)
        try:
            deleted = await asyncio.to_thread(archive.delete_before, cutoff)
        except StoreError:
            log.exception("archive retention failed; trying again in %.0f s", every_s)
        else:
            if deleted:
                log.info("archive retention deleted %d messages", deleted)
        await asyncio.sleep(every_s)
