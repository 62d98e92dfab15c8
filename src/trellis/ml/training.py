"""Training jobs for the built-in families, from stored telemetry.

``isolation-forest``: an anomaly detector on one device model's metrics (for the
simulated pumps: temperature, vibration, pressure), fitted on rows aligned by
timestamp, converted to ONNX with skl2onnx. The result carries what the registry
wants: the artifact, a signature with units, metrics, a reference sample for drift,
a model card and an OpenLineage-style run describing the input data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from trellis.core.clock import to_iso
from trellis.ml._extra import require_ml
from trellis.ml.signature import Feature, Output, Signature
from trellis.store.base import TimeSeriesStore

__all__ = ["TrainedModel", "feature_rows", "train_isolation_forest"]

#: skl2onnx converts IsolationForest only with these opsets (measured, DESIGN.md).
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
REFERENCE_SIZE = 1000


class TrainedModel(msgspec.Struct, frozen=True):
    """A fitted model ready to register."""

    onnx: bytes
    signature: Signature
    metrics: dict[str, float]
    card: dict[str, str]
    lineage: dict[str, Any]
    reference: dict[str, list[float]]


def feature_rows(
    store: TimeSeriesStore,
    tenant: str,
    devices: Sequence[str],
    metrics: Sequence[str],
    start: int,
    end: int,
    progress: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Rows of ``metrics`` per (device, ts) where every metric has a value."""
    rows: list[list[float]] = []
    for device in devices:
        columns = [
            {p.ts: p.value for p in store.query(tenant, device, m, start, end, limit=1_000_000)}
            for m in metrics
        ]
        common = sorted(set(columns[0]).intersection(*columns[1:]))
        rows.extend([column[ts] for column in columns] for ts in common)
        if progress is not None:
            progress(1)
    return rows


def train_isolation_forest(
    rows: Sequence[Sequence[float]],
    features: Sequence[Feature],
    *,
    device_model: str,
    window: tuple[int, int],
    devices: Sequence[str],
    trees: int = 50,
    contamination: float = 0.01,
    seed: int = 0,
) -> TrainedModel:
    """Fit an IsolationForest and convert it to ONNX."""
    require_ml()
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.ensemble import IsolationForest

    if len(rows) < 50:
        raise ValueError(
            f"only {len(rows)} complete rows of {[f.name for f in features]} in the window; "
            "need at least 50 (run the simulator longer, or widen the window)"
        )
    x = np.asarray(rows, dtype=np.float32)
    model = IsolationForest(n_estimators=trees, contamination=contamination, random_state=seed).fit(
        x
    )
    onnx_model = to_onnx(model, x[:1], target_opset=TARGET_OPSET)
    scores = model.decision_function(x)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(REFERENCE_SIZE, len(x)), replace=False)]
    signature = Signature(
        device_model=device_model,
        features=list(features),
        outputs=[Output("label", "label"), Output("scores", "score")],
    )
    start, end = window
    return TrainedModel(
        onnx=onnx_model.SerializeToString(),
        signature=signature,
        metrics={
            "train_rows": float(len(x)),
            "train_alarm_rate": float(np.mean(model.predict(x) == -1)),
            "train_score_mean": float(np.mean(scores)),
        },
        card={
            "intended_use": f"flag anomalous {device_model} behaviour for operator review",
            "limits": "unsupervised; trained on the window below, assumed mostly healthy",
            "training_window": f"{to_iso(start)} .. {to_iso(end)}",
            "known_biases": "devices and operating regimes absent from the window are unseen",
            "family": "isolation-forest",
        },
        lineage={
            "eventType": "COMPLETE",
            "run": {"runId": str(uuid.uuid4())},
            "job": {"namespace": "trellis", "name": f"train-isolation-forest-{device_model}"},
            "inputs": [
                {
                    "namespace": "trellis.timeseries",
                    "name": f"{device}/{feature.name}",
                    "facets": {"window": {"start": start, "end": end}},
                }
                for device in devices
                for feature in features
            ],
        },
        reference={
            feature.name: [float(v) for v in sample[:, i]] for i, feature in enumerate(features)
        },
    )
