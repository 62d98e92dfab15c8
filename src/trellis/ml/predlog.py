"""The prediction log: every prediction, written in bounded batches.

A served batch becomes one :class:`LoggedBatch` (the version, and per prediction its
inputs digest, score and device, packed in order). Appending is a list append under a
lock; the platform's model task writes what waits every ``log_flush_s`` in one
INSERT, off the serving path. When ``max_pending`` predictions wait (the writer is
behind, or no platform task runs, as in the CLI), the appending thread writes them
itself: memory stays bounded, nothing is dropped, and the caller feels backpressure.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.store.metadata import ml_prediction_batches

__all__ = ["LoggedBatch", "LoggedPrediction", "PredictionLog"]

DIGEST_BYTES = 16


class LoggedBatch(msgspec.Struct, frozen=True, gc=False):
    """One version's share of one served request."""

    tenant: str
    name: str
    version: str
    role: str
    n: int
    devices: list[str | None]
    digests: bytes
    scores: bytes | None
    score_sum: float | None
    latency_us: int
    cpu_us: int
    at_ms: int


class LoggedPrediction(msgspec.Struct, frozen=True):
    """One prediction as read back from the log."""

    version: str
    role: str
    device: str | None
    inputs_digest: str
    score: float | None
    at_ms: int


class PredictionLog:
    """Buffered writer (and reader) of the prediction log."""

    def __init__(self, engine: sa.Engine, max_pending: int = 20_000) -> None:
        self._engine = engine
        self._max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._pending_n = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0

    def append(self, batch: LoggedBatch) -> None:
        """Queue one batch; write everything queued when too much waits."""
        with self._lock:
            self._pending.append(msgspec.structs.asdict(batch))
            self._pending_n += batch.n
            full = self._pending_n >= self._max_pending
        if full:
            self.flush()

    def flush(self) -> int:
        """Write everything queued; return how many predictions were written."""
        with self._write_lock:
            with self._lock:
                rows, self._pending = self._pending, []
                n, self._pending_n = self._pending_n, 0
            if not rows:
                return 0
            with self._engine.begin() as c:
                c.execute(ml_prediction_batches.insert(), rows)
            self.written += n
            return n

    @property
    def pending(self) -> int:
        """Predictions not yet written."""
        return self._pending_n

    def read(self, tenant: str, name: str, since_ms: int = 0) -> list[LoggedPrediction]:
        """Every logged prediction of a model since ``since_ms``, in order."""
        self.flush()
        t = ml_prediction_batches.c
        with self._engine.connect() as c:
            batches = c.execute(
                sa.select(t.version, t.role, t.n, t.devices, t.digests, t.scores, t.at_ms)
                .where(t.tenant == tenant, t.name == name, t.at_ms >= since_ms)
                .order_by(t.id)
            ).all()
        out: list[LoggedPrediction] = []
        for version, role, n, devices, digests, packed, at_ms in batches:
            scores: Sequence[float | None] = [None] * n
            if packed is not None:
                scores = array("f", packed).tolist()
            for i in range(n):
                digest = digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES].hex()
                out.append(LoggedPrediction(version, role, devices[i], digest, scores[i], at_ms))
        return out
