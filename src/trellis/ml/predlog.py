"""The prediction log: every prediction, written in bounded batches.

Appending is a list append under a lock. The platform's model task writes what waits
every ``log_flush_s`` in one INSERT, off the serving path. When ``max_pending``
records wait (the writer is behind, or no platform task runs, as in the CLI), the
appending thread writes them itself: memory stays bounded, nothing is dropped, and
the caller feels the backpressure.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.store.metadata import ml_predictions

__all__ = ["PredictionLog", "PredictionRecord"]


class PredictionRecord(msgspec.Struct, frozen=True, gc=False):
    """One logged prediction."""

    tenant: str
    name: str
    version: str
    role: str
    device: str | None
    inputs_digest: str
    score: float | None
    latency_us: int
    cpu_us: int
    at_ms: int


class PredictionLog:
    """Buffered writer of :class:`PredictionRecord` rows."""

    def __init__(self, engine: sa.Engine, max_pending: int = 20_000) -> None:
        self._engine = engine
        self._max_pending = max_pending
        self._pending: list[tuple[Any, ...]] = []
        # One driver-level INSERT reused for every batch: building SQLAlchemy parameter
        # dicts per row cost more than running the model (measured, bench/inference.py).
        columns = list(PredictionRecord.__struct_fields__)
        marks = ", ".join(_placeholder(engine.dialect.paramstyle, name) for name in columns)
        self._sql = f"INSERT INTO {ml_predictions.name} ({', '.join(columns)}) VALUES ({marks})"
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Queue records; write a batch when enough wait."""
        with self._lock:
            self._pending.extend(msgspec.structs.astuple(r) for r in records)
            full = len(self._pending) >= self._max_pending
        if full:
            self.flush()

    def flush(self) -> int:
        """Write everything queued; return how many rows were written."""
        with self._write_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            with self._engine.begin() as c:
                c.exec_driver_sql(self._sql, rows)
            self.written += len(rows)
            return len(rows)

    @property
    def pending(self) -> int:
        """Records not yet written."""
        return len(self._pending)


def _placeholder(paramstyle: str, name: str) -> str:
    """The DB-API placeholder of ``name`` for the driver's positional style."""
    if paramstyle == "qmark":
        return "?"
    if paramstyle in ("format", "pyformat"):
        return "%s"
    if paramstyle == "numeric":
        raise ValueError("numeric paramstyle is not supported by the prediction log")
    raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r} ({name})")
