"""Where simulated frames go: device messages, CSV, Parquet.

Frames are arrays; these sinks are the only place the simulator touches one device
at a time (a message per device is what a broker carries). Files are long format,
one row per reading: ``ts, device, model, metric, value, seq`` — what a training
pipeline or ``pandas.read_csv`` expects, and the same bytes for the same seed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import msgspec
import numpy as np

from trellis.core.types import RawMessage
from trellis.ingest.decode import TelemetryPayload, telemetry_topic
from trellis.sim.engine import Frame

__all__ = ["COLUMNS", "CsvSink", "FrameSink", "MessageEncoder", "ParquetSink", "open_sink"]

COLUMNS = ("ts", "device", "model", "metric", "value", "seq")
DECIMALS = 3


class MessageEncoder:
    """Frames → :class:`RawMessage` per device, JSON as a real device sends it.

    ``only`` limits the metrics of some asset kinds (e.g. the demo fleet reports what
    the built-in device models know); other kinds report all their metrics.
    """

    def __init__(
        self, tenant: str, run: str, only: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self.tenant = tenant
        self.run = run
        self.only = dict(only or {})
        self._json = msgspec.json.Encoder()

    def messages(self, frames: Iterable[Frame], received_ms: int) -> list[RawMessage]:
        """The messages of ``frames``, in frame order, received at ``received_ms``."""
        out: list[RawMessage] = []
        for frame in frames:
            metrics = frame.metrics
            values = np.round(frame.values, DECIMALS)
            wanted = self.only.get(frame.kind)
            if wanted is not None:
                values = values[:, [metrics.index(m) for m in wanted]]
                metrics = wanted
            for row, ts, seq, vector in zip(
                frame.rows.tolist(),
                frame.ts_ms.tolist(),
                frame.seq.tolist(),
                values.tolist(),
                strict=True,
            ):
                device = frame.ids[row]
                payload = TelemetryPayload(
                    values=dict(zip(metrics, vector, strict=True)), ts=ts, seq=seq
                )
                out.append(
                    RawMessage(
                        id=f"{self.run}-{device}-{seq}",
                        source="sim",
                        topic=telemetry_topic(self.tenant, device),
                        payload=self._json.encode(payload),
                        received_ms=received_ms,
                    )
                )
        return out


class FrameSink(Protocol):
    """Somewhere frames are written; a context manager that closes the file."""

    rows: int

    def write(self, frames: Iterable[Frame]) -> None:
        """Append the readings of ``frames``."""

    def __enter__(self) -> FrameSink: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def _columns(frame: Frame) -> tuple[list[Any], ...]:
    """The long-format columns of one frame (one row per reading)."""
    n_metrics = len(frame.metrics)
    devices = [frame.ids[row] for row in frame.rows.tolist()]
    return (
        np.repeat(frame.ts_ms, n_metrics).tolist(),
        [device for device in devices for _ in range(n_metrics)],
        [frame.model] * frame.values.size,
        list(frame.metrics) * frame.rows.size,
        np.round(frame.values, DECIMALS).ravel().tolist(),
        np.repeat(frame.seq, n_metrics).tolist(),
    )


class CsvSink:
    """Readings as CSV with a header row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._file: io.TextIOWrapper | None = None

    def __enter__(self) -> CsvSink:
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(COLUMNS)
        return self

    def write(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            columns = _columns(frame)
            self._writer.writerows(zip(*columns, strict=True))
            self.rows += frame.values.size

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()


class ParquetSink:
    """Readings as Parquet (needs ``pip install 'trellis-aiot[parquet]'``)."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa  # type: ignore[import-untyped]  # ships no stubs
            import pyarrow.parquet as pq  # type: ignore[import-untyped]  # ships no stubs
        except ImportError:
            raise RuntimeError(
                "Parquet output needs pyarrow: pip install 'trellis-aiot[parquet]', "
                "or write CSV (a path ending in .csv)"
            ) from None
        self._pa = pa
        self._pq = pq
        self.path = path
        self.rows = 0
        self._schema = pa.schema(
            [
                ("ts", pa.timestamp("ms", tz="UTC")),
                ("device", pa.string()),
                ("model", pa.dictionary(pa.int8(), pa.string())),
                ("metric", pa.dictionary(pa.int8(), pa.string())),
                ("value", pa.float64()),
                ("seq", pa.int64()),
            ]
        )
        self._writer: Any = None

    def __enter__(self) -> ParquetSink:
        self._writer = self._pq.ParquetWriter(self.path, self._schema)
        return self

    def write(self, frames: Iterable[Frame]) -> None:
        batches = [_columns(frame) for frame in frames]
        if not batches:
            return
        merged: list[list[Any]] = [[] for _ in COLUMNS]
        for batch in batches:
            for column, values in zip(merged, batch, strict=True):
                column.extend(values)
        table = self._pa.Table.from_arrays(
            [self._pa.array(column) for column in merged], names=list(COLUMNS)
        ).cast(self._schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.close()


def open_sink(path: Path) -> CsvSink | ParquetSink:
    """A sink chosen by the file's suffix: ``.parquet`` or ``.csv``."""
    if path.suffix == ".parquet":
        return ParquetSink(path)
    if path.suffix == ".csv":
        return CsvSink(path)
    raise ValueError(f"{path}: write .csv or .parquet (got {path.suffix or 'no suffix'!r})")
