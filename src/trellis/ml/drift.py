"""Drift: feature drift (PSI and KS per feature, a sliding window against the training
reference) and concept drift (ADWIN and Page-Hinkley from ``river`` on the score
stream, and on the error stream that operator feedback labels give).

The statistics are pure functions of arrays; :class:`DriftMonitor` keeps the bounded
windows that inference feeds and the streaming detectors.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["ConceptDrift", "DriftMonitor", "DriftReport", "FeatureDrift", "ks", "psi"]

_EPS = 1e-4


def _edges(reference: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    import numpy as np

    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def _shares(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> Any:
    import numpy as np

    counts, _ = np.histogram(values, edges)
    return np.clip(counts / max(len(values), 1), _EPS, None)


def psi(reference: Sequence[float] | Any, current: Sequence[float] | Any, bins: int = 10) -> float:
    """Population stability index over reference quantile bins (> 0.2: a real shift)."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    edges = _edges(ref, bins)
    expected, actual = _shares(ref, edges), _shares(cur, edges)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(reference: Sequence[float] | Any, current: Sequence[float] | Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy import stats

    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


class FeatureDrift(msgspec.Struct, frozen=True):
    """One feature's drift, with both histograms for the chart."""

    feature: str
    psi: float
    ks: float
    ks_pvalue: float
    drifted: bool
    edges: list[float]
    reference: list[float]
    current: list[float]


class ConceptDrift(msgspec.Struct, frozen=True):
    """Change detected in the score stream, or in the error stream of labelled alerts."""

    scores_seen: int
    adwin: bool
    page_hinkley: bool
    labels: int
    label_error_rate: float | None
    labels_drift: bool


class DriftReport(msgspec.Struct, frozen=True):
    """The drift of one model version over its current window."""

    model: str
    version: str
    window: int
    features: list[FeatureDrift]
    concept: ConceptDrift
    drifted: bool


class _Stream:
    def __init__(self, window: int) -> None:
        from river import drift

        self.rows: deque[Sequence[float]] = deque(maxlen=window)
        self.adwin = drift.ADWIN()
        self.page_hinkley = drift.PageHinkley()
        self.scores = 0
        self.adwin_hit = False
        self.ph_hit = False


class DriftMonitor:
    """Sliding windows of what each model version was fed, and its score detectors."""

    def __init__(
        self, window: int = 500, psi_threshold: float = 0.2, ks_pvalue: float = 0.01
    ) -> None:
        self.window = window
        self.psi_threshold = psi_threshold
        self.ks_pvalue = ks_pvalue
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._lock = threading.Lock()

    def _stream(self, key: tuple[str, str, str]) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(self.window)
        return stream

    def observe(
        self,
        tenant: str,
        model: str,
        version: str,
        rows: Sequence[Sequence[float]],
        scores: Sequence[float],
    ) -> None:
        """Feed a served batch: its feature rows and scores."""
        with self._lock:
            stream = self._stream((tenant, model, version))
            stream.rows.extend(rows)
            if scores:
                # One update per served batch (its mean score): per-row updates cost more
                # than the model on batched traffic; single-row traffic is per row anyway.
                mean = sum(scores) / len(scores)
                stream.adwin.update(mean)
                stream.page_hinkley.update(mean)
                stream.adwin_hit |= stream.adwin.drift_detected
                stream.ph_hit |= stream.page_hinkley.drift_detected
            stream.scores += len(scores)

    def tenants(self) -> set[str]:
        """Tenants with a window (whose champions the periodic check visits)."""
        with self._lock:
            return {key[0] for key in self._streams}

    def reset(self, tenant: str, model: str, version: str) -> None:
        """Forget a version's window (after a rollback or retraining)."""
        with self._lock:
            self._streams.pop((tenant, model, version), None)

    def check(
        self,
        tenant: str,
        model: str,
        version: str,
        names: Sequence[str],
        reference: dict[str, list[float]],
        label_errors: Sequence[int] = (),
        min_window: int = 50,
    ) -> DriftReport:
        """Compare the current window with the reference, feature by feature."""
        import numpy as np

        with self._lock:
            stream = self._stream((tenant, model, version))
            rows = np.asarray(list(stream.rows), dtype=np.float64)
            adwin, ph, seen = stream.adwin_hit, stream.ph_hit, stream.scores
        features: list[FeatureDrift] = []
        if len(rows) >= min_window:
            for column, name in enumerate(names):
                ref = np.asarray(reference.get(name, []), dtype=np.float64)
                if len(ref) == 0:
                    continue
                cur = rows[:, column]
                value = psi(ref, cur)
                statistic, pvalue = ks(ref, cur)
                edges = _edges(ref, 10)
                features.append(
                    FeatureDrift(
                        feature=name,
                        psi=value,
                        ks=statistic,
                        ks_pvalue=pvalue,
                        drifted=value > self.psi_threshold and pvalue < self.ks_pvalue,
                        edges=[float(e) for e in edges[1:-1]],
                        reference=[float(s) for s in _shares(ref, edges)],
                        current=[float(s) for s in _shares(cur, edges)],
                    )
                )
        labels_drift = False
        error_rate = None
        if label_errors:
            from river import drift

            detector = drift.ADWIN()
            for error in label_errors:
                detector.update(error)
                labels_drift |= detector.drift_detected
            error_rate = sum(label_errors) / len(label_errors)
        concept = ConceptDrift(seen, adwin, ph, len(label_errors), error_rate, labels_drift)
        drifted = any(f.drifted for f in features) or labels_drift
        return DriftReport(model, version, len(rows), features, concept, drifted)
