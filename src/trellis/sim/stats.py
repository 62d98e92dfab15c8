"""Paired comparison over seeds: a percentile bootstrap of the mean difference.

Written here rather than taken from scipy so the simulator needs only numpy; the
percentile bootstrap is what ``scipy.stats.bootstrap(method="percentile")`` does.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from trellis.sim.bank import Floats

__all__ = ["Interval", "paired_bootstrap"]


class Interval(msgspec.Struct, frozen=True):
    """A mean and its confidence interval; NaN when there is nothing to estimate."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95


def paired_bootstrap(
    b: Floats, a: Floats, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of ``b − a`` over pairs, with a percentile bootstrap interval.

    Pairs where either side is NaN are left out (e.g. a seed where a variant detected
    nothing has no lead time). Resampling is seeded: the same data give the same
    interval.
    """
    diff = b - a
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, diff.size, size=(resamples, diff.size))
    means = diff[picks].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.mean()), float(low), float(high), int(diff.size), level)
