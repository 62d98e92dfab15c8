"""Embedded ingest throughput: telemetry messages → decode → validate → SQLite, in one process.

Run ``python bench/ingest_embedded.py [--quick] [--n N]``. Prints one JSON line per
figure on stdout (DESIGN.md, Benchmarks) and progress on stderr:

* ``readings_per_s_pipeline``: readings/s through the real :class:`IngestPipeline`
  (bounded queue, batch decode and validation against the device models, one writer
  thread into a fresh :class:`SQLiteTimeSeriesStore` file, publish on an in-process
  bus with one draining subscriber). Baseline: the same readings as pre-built tuples,
  ``executemany`` with a plain ``INSERT`` into a fresh file with the store's pragmas
  and a table of the reading's nine columns keyed by (tenant, device, metric, ts),
  ``WITHOUT ROWID`` (the store's layout until it moved to series ids and a landing
  table), one transaction per batch of the pipeline's maximum batch size.
* ``readings_per_s_pipeline_no_archive``: the same pipeline without the raw message
  archive, against the same baseline, so the archive's cost is the difference of the
  two ratios. The archive's compression is reported as ``archive_compression``.
* ``readings_per_s_decode``: readings/s of :func:`decode_telemetry` alone (parse,
  type-check, timestamp and range checks, ``Reading`` objects). Baseline:
  ``msgspec.json.decode`` of the same payloads into plain dicts.

Payloads are JSON-encoded and wrapped in ``RawMessage`` in advance: encoding is the
device's cost and receiving the protocol adapter's, not ingest's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from _common import Report
from trellis.bus import InProcessBus
from trellis.core.clock import now_ms
from trellis.core.config import IngestSettings
from trellis.core.types import Device, RawMessage, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest import IngestPipeline, Limits, Quarantine, decode_telemetry, telemetry_topic
from trellis.ingest.archive import Archive
from trellis.store import SQLiteTimeSeriesStore
from trellis.store.metadata import open_metadata

BENCH = "ingest_embedded"
REPORT = Report(BENCH)
log = REPORT.log
emit = REPORT.emit_readings


TENANT = "default"
DEVICES = [(f"pump-{i:04d}", "pump") for i in range(5)] + [
    (f"room-{i:04d}", "room") for i in range(5)
]
METRICS_PER_MESSAGE = 3


def build_messages(readings: int) -> list[RawMessage]:
    """Telemetry from 10 devices, three metrics each, every key distinct, all valid."""
    received = now_ms()
    start = received - 3_600_000
    encode = msgspec.json.Encoder().encode
    messages = []
    for i in range(readings // METRICS_PER_MESSAGE):
        device, model = DEVICES[i % len(DEVICES)]
        tick = i // len(DEVICES)
        if model == "pump":
            values = {
                "temperature": 60.0 + (i % 400) / 10,
                "vibration": 2.0 + (i % 37) / 10,
                "pressure": 4.0 + (i % 11) / 100,
            }
        else:
            values = {
                "temperature": 21.0 + (i % 30) / 10,
                "co2": 400.0 + i % 900,
                "occupancy": i % 40,
            }
        payload = encode({"ts": start + tick, "seq": tick, "values": values})
        messages.append(
            RawMessage(
                id=f"m{i}",
                source="bench",
                topic=telemetry_topic(TENANT, device),
                payload=payload,
                received_ms=received,
            )
        )
    return messages


def open_registry(directory: Path) -> tuple[DeviceRegistry, Quarantine, Archive]:
    """The real registry, quarantine and archive on a fresh metadata database."""
    engine = open_metadata(f"sqlite:///{directory / 'trellis.db'}")
    registry = DeviceRegistry(engine)
    for device, model in DEVICES:
        registry.register(Device(TENANT, device, model))
    return registry, Quarantine(engine), Archive(engine)


def bench_decode_baseline(messages: Sequence[RawMessage]) -> float:
    """Seconds to msgspec-decode every payload into a plain dict."""
    decode = msgspec.json.decode
    started = time.perf_counter()
    for raw in messages:
        decode(raw.payload)
    return time.perf_counter() - started


def readings_as_rows(
    messages: Sequence[RawMessage], registry: DeviceRegistry, limits: Limits
) -> list[tuple[object, ...]]:
    """The exact rows the pipeline stores, as tuples in the table's column order."""
    rows: list[tuple[object, ...]] = []
    for raw in messages:
        decoded = decode_telemetry(raw, registry.get, registry.models, limits)
        if not isinstance(decoded, list):
            raise SystemExit(f"bench message refused: {decoded.reason}")
        rows.extend(msgspec.structs.astuple(r) for r in decoded)
    return rows


def bench_decode(messages: Sequence[RawMessage], registry: DeviceRegistry, limits: Limits) -> float:
    """Seconds for decode_telemetry over every message (parse, validate, build readings)."""
    lookup, models = registry.get, registry.models
    started = time.perf_counter()
    for raw in messages:
        decoded = decode_telemetry(raw, lookup, models, limits)
        if not isinstance(decoded, list):
            raise SystemExit(f"bench message refused: {decoded.reason}")
    return time.perf_counter() - started


def bench_insert_baseline(rows: Sequence[tuple[object, ...]], directory: Path, batch: int) -> float:
    """Seconds for a plain batched INSERT of pre-built row tuples into a fresh file."""
    path = directory / "baseline.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA page_size=16384")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA cache_size=-65536")
    connection.execute(
        "CREATE TABLE readings (tenant TEXT NOT NULL, device TEXT NOT NULL,"
        " metric TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, unit TEXT,"
        " quality INTEGER NOT NULL, seq INTEGER, source_msg TEXT,"
        " PRIMARY KEY (tenant, device, metric, ts)) WITHOUT ROWID"
    )
    insert = "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    started = time.perf_counter()
    for at in range(0, len(rows), batch):
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(insert, rows[at : at + batch])
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    stored = connection.execute("SELECT count(*) FROM readings").fetchone()[0]
    connection.close()
    if stored != len(rows):
        raise SystemExit(f"baseline stored {stored} of {len(rows)} rows")
    return elapsed


async def _pipeline_run(
    messages: Sequence[RawMessage],
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
    settings: IngestSettings,
    archive: Archive | None,
) -> tuple[float, int, int, int]:
    bus: InProcessBus[Reading] = InProcessBus(capacity=64)
    pipeline = IngestPipeline(store, registry, quarantine, bus, settings, archive)
    published = 0

    async def drain() -> None:
        nonlocal published
        async for batch in bus.subscribe("drain"):
            published += len(batch)

    async def produce() -> None:
        submit = pipeline.submit
        for raw in messages:
            await submit(raw)
        await pipeline.close()

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        consumer = tasks.create_task(drain(), name="bench-drain")
        tasks.create_task(produce(), name="bench-producer")
        await tasks.create_task(pipeline.run(), name="ingest-worker")
        store.compact()  # the store's landing table merged: a rate it can keep up
        elapsed = time.perf_counter() - started
        bus.close()
        await consumer
    stats = pipeline.stats()
    return elapsed, stats.stored, stats.quarantined, published


def bench_pipeline(
    messages: Sequence[RawMessage], directory: Path, settings: IngestSettings, *, archived: bool
) -> tuple[float, float]:
    """Seconds for every message through the real pipeline into a fresh store file, and
    the archive's compression ratio (raw bytes / stored bytes; 0 without archive)."""
    registry, quarantine, archive = open_registry(directory)
    store = SQLiteTimeSeriesStore(directory / "timeseries.db")
    try:
        elapsed, stored, quarantined, published = asyncio.run(
            _pipeline_run(
                messages, store, registry, quarantine, settings, archive if archived else None
            )
        )
    finally:
        store.close()
    kept = archive.stats()
    if archived and kept.messages != len(messages):
        raise SystemExit(f"archive kept {kept.messages} of {len(messages)} messages")
    expected = len(messages) * METRICS_PER_MESSAGE
    if (stored, quarantined, published) != (expected, 0, expected):
        raise SystemExit(
            f"pipeline stored {stored}, quarantined {quarantined}, published {published}; "
            f"expected {expected} stored and published"
        )
    payload_bytes = sum(len(m.payload) for m in messages)
    return elapsed, (payload_bytes / kept.stored_bytes if kept.stored_bytes else 0.0)


def main() -> None:
    """Parse arguments, run the four measurements, print two figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 readings (under 60 s)")
    parser.add_argument("--n", type=int, help="number of readings (default 1,000,000)")
    args = parser.parse_args()
    n = args.n or (200_000 if args.quick else 1_000_000)
    n -= n % METRICS_PER_MESSAGE
    settings = IngestSettings()
    batch_readings = settings.batch_max * METRICS_PER_MESSAGE

    log(f"building {n // METRICS_PER_MESSAGE:,} messages, {n:,} readings, {len(DEVICES)} devices")
    messages = build_messages(n)
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        directory = Path(tmp)
        (directory / "decode").mkdir()
        registry, _quarantine, _archive = open_registry(directory / "decode")

        log("decode: msgspec baseline")
        decode_base = bench_decode_baseline(messages)
        log("decode: decode_telemetry")
        limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_skew_ms=int(settings.max_future_skew_s * 1000),
            max_past_age_ms=int(settings.max_past_age_s * 1000),
        )
        decode_time = bench_decode(messages, registry, limits)

        log(f"store: bare executemany baseline, {batch_readings:,} readings per transaction")
        (directory / "baseline").mkdir()
        rows = readings_as_rows(messages, registry, limits)
        insert_base = bench_insert_baseline(rows, directory / "baseline", batch_readings)
        del rows
        log("store: IngestPipeline with the raw message archive")
        (directory / "pipeline").mkdir()
        pipeline_time, compression = bench_pipeline(
            messages, directory / "pipeline", settings, archived=True
        )
        log("store: IngestPipeline without the archive")
        (directory / "bare").mkdir()
        bare_time, _ = bench_pipeline(messages, directory / "bare", settings, archived=False)

    emit(
        "readings_per_s_pipeline",
        n / pipeline_time,
        f"bare executemany INSERT of pre-built tuples, {batch_readings} per transaction, "
        "keyed by the reading key, store pragmas, same run",
        n / insert_base,
        ">= 0.5 ratio",
        n,
    )
    emit(
        "readings_per_s_pipeline_no_archive",
        n / bare_time,
        f"bare executemany INSERT of pre-built tuples, {batch_readings} per transaction, "
        "keyed by the reading key, store pragmas, same run",
        n / insert_base,
        "informational: the archive's cost is the drop to readings_per_s_pipeline",
        n,
    )
    print(
        json.dumps(
            {
                "bench": BENCH,
                "figure": "archive_compression",
                "value": round(compression, 2),
                "unit": "payload bytes / archived bytes",
                "baseline": "uncompressed payloads (ratio 1.0)",
                "baseline_value": 1.0,
                "ratio": round(compression, 2),
                "target": "informational",
                "n": n // METRICS_PER_MESSAGE,
                "machine": f"{os.cpu_count()} cores",
            }
        ),
        flush=True,
    )
    emit(
        "readings_per_s_decode",
        n / decode_time,
        "msgspec.json.decode of the same payloads into dicts, same run",
        n / decode_base,
        "none yet (informational)",
        n,
    )


if __name__ == "__main__":
    main()
