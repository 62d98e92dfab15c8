"""The prediction log: every prediction, written in bounded batches.

Appending is a list append under a lock; when ``batch`` records wait, the appending
thread writes them in one INSERT, so memory is bounded and nothing is dropped (the
caller pays for the write, which is the backpressure). :meth:`PredictionLog.flush`
writes the rest; the platform calls it periodically and at shutdown.
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

    def __init__(self, engine: sa.Engine, batch: int = 500) -> None:
        self._engine = engine
        self._batch = batch
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Queue records; write a batch when enough wait."""
        with self._lock:
            self._pending.extend(msgspec.structs.asdict(r) for r in records)
            full = len(self._pending) >= self._batch
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
                c.execute(ml_predictions.insert(), rows)
            self.written += len(rows)
            return len(rows)

    @property
    def pending(self) -> int:
        """Records not yet written."""
        return len(self._pending)
