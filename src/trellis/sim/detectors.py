"""Detectors an experiment compares: anything with ``detect(readings) -> detections``.

A variant of an experiment is a :class:`Detector`: it reads the series of one asset
kind and returns the alerts it would have raised. Rules and thresholds are built in;
a model version plugs in the same way (wrap its inference in ``detect``) once the
model registry lands. :class:`ZScoreDetector` is a simple built-in anomaly detector
(an exponentially weighted mean and variance per asset) standing in for the model
registry's anomaly models until then.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import msgspec
import numpy as np

from trellis.sim.bank import Floats, Ints

__all__ = [
    "Detection",
    "Detector",
    "Readings",
    "ThresholdDetector",
    "ZScoreDetector",
    "raised",
]


class Readings(msgspec.Struct, frozen=True):
    """The series of one asset kind on a regular clock: ``values[t, asset, metric]``.

    A message that never arrived (dropped) is NaN; duplicates are already merged.
    """

    kind: str
    ts_ms: Ints
    ids: list[str]
    metrics: tuple[str, ...]
    values: Floats

    def metric(self, name: str) -> Floats:
        """``values[:, :, metric]`` as a (time, asset) array."""
        return self.values[:, :, self.metrics.index(name)]


class Detection(msgspec.Struct, frozen=True):
    """An alert the detector raised: asset and instant (epoch ms)."""

    asset: str
    ts_ms: int


@runtime_checkable
class Detector(Protocol):
    """One side of an experiment."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The metrics ``detect`` reads."""
        ...

    def detect(self, readings: Readings) -> list[Detection]:
        """The alerts raised over ``readings``, in time order."""
        ...


def raised(readings: Readings, active: np.ndarray, hold_steps: int) -> list[Detection]:
    """Alerts from a (time, asset) boolean condition: raised when it has held for
    ``hold_steps`` consecutive steps, cleared when it stops (then may raise again)."""
    run = np.zeros(active.shape[1], dtype=np.int64)
    up = np.zeros(active.shape[1], dtype=bool)
    out: list[Detection] = []
    for t in range(active.shape[0]):
        run = np.where(active[t], run + 1, 0)
        new = (run >= hold_steps) & ~up
        up = (up | new) & active[t]
        out.extend(Detection(readings.ids[i], int(readings.ts_ms[t])) for i in np.flatnonzero(new))
    return out


def _steps(readings: Readings, seconds: float) -> int:
    step_ms = float(np.median(np.diff(readings.ts_ms))) if readings.ts_ms.size > 1 else 1000.0
    return max(1, math.ceil(seconds * 1000 / step_ms))


class ThresholdDetector(msgspec.Struct, frozen=True):
    """``metric > above`` held for ``for_s`` seconds: what a threshold rule does."""

    metric: str
    above: float
    for_s: float = 0.0

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.metric,)

    def detect(self, readings: Readings) -> list[Detection]:
        series = readings.metric(self.metric)
        # A missing sample neither raises nor clears: carry the condition forward.
        active = _carry(series > self.above, np.isnan(series))
        return raised(readings, active, _steps(readings, self.for_s) if self.for_s else 1)


class ZScoreDetector(msgspec.Struct, frozen=True):
    """Per-asset baseline learned from the first ``fit_s`` seconds (the asset's
    healthy history), then an alert when ``(x − mean)/sd > z`` holds for ``for_s``.

    After the fit the baseline keeps adapting as an exponentially weighted mean and
    variance with a long ``halflife_s``, learning only from samples that are not
    anomalous, so a slowly growing fault does not teach the detector it is normal.
    """

    metric: str
    z: float = 6.0
    halflife_s: float = 7 * 86_400.0
    for_s: float = 0.0
    fit_s: float = 6 * 3600.0

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.metric,)

    def detect(self, readings: Readings) -> list[Detection]:
        series = readings.metric(self.metric)
        steps, assets = series.shape
        alpha = 1 - 0.5 ** (1 / _steps(readings, self.halflife_s))
        fit = min(steps, _steps(readings, self.fit_s))
        active = np.zeros((steps, assets), dtype=bool)
        history = series[:fit]
        if fit < 2 or np.isnan(history).all(axis=0).any():
            return []  # too little history to learn a baseline from
        mean = np.nanmean(history, axis=0)
        var = np.maximum(np.nanvar(history, axis=0), 1e-12)
        for t in range(fit, steps):
            x = series[t]
            seen = ~np.isnan(x)
            score = np.where(seen, (x - mean) / np.sqrt(var), 0.0)
            anomalous = seen & (score > self.z)
            learn = seen & ~anomalous
            delta = np.where(learn, x - mean, 0.0)
            mean = mean + alpha * delta
            var = np.where(learn, (1 - alpha) * (var + alpha * delta**2), var)
            active[t] = anomalous | (~seen & active[t - 1])
        return raised(readings, active, _steps(readings, self.for_s) if self.for_s else 1)


def _carry(condition: np.ndarray, missing: np.ndarray) -> np.ndarray:
    out = condition.copy()
    for t in range(1, out.shape[0]):
        out[t] = np.where(missing[t], out[t - 1], condition[t])
    return out
