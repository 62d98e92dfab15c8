"""What every vectorised asset bank shares: ids, sites, fault arrays, noise.

A bank holds every asset of one kind as numpy arrays and advances them all in one
call, so a 10,000-device fleet costs a handful of array operations per step, not
10,000 Python calls. Each bank draws from its own generator (spawned from the
scenario seed), so adding chillers to a scenario does not change a pump's noise.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import msgspec
import numpy as np
import numpy.typing as npt

from trellis.sim.faults import FAULTS, FaultKind, effect

__all__ = ["DAY_S", "Bank", "Conditions", "Floats", "Ints", "SiteLoads", "daily", "relax"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

DAY_S = 86_400.0


class Conditions(msgspec.Struct):
    """The world at one step, per site: weather, sun and whether people are in."""

    t_s: float
    dt_s: float
    hour: float
    occupied: bool
    outdoor_c: Floats
    solar: Floats


class SiteLoads(msgspec.Struct):
    """Per-site sums that flow between banks within one step (kW)."""

    cooling_kw: Floats
    electric_kw: Floats


class Bank(abc.ABC):
    """Every asset of one kind, advanced together."""

    kind: ClassVar[str]
    model: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]

    def __init__(self, ids: list[str], sites: Ints, rng: np.random.Generator) -> None:
        self.ids = ids
        self.sites = sites
        self.n = len(ids)
        self.rng = rng
        self._faults: dict[str, tuple[Floats, Floats]] = {}

    def index(self, asset_id: str) -> int:
        """Position of ``asset_id`` in this bank (ValueError when absent)."""
        return self.ids.index(asset_id)

    def inject(self, position: int, fault: FaultKind, onset_s: float, growth_s: float) -> None:
        """Start ``fault`` on the asset at ``position`` at ``onset_s`` (scenario seconds)."""
        onset, growth = self._faults.setdefault(
            fault.name, (np.full(self.n, math.inf), np.ones(self.n))
        )
        onset[position] = onset_s
        growth[position] = max(growth_s, 1e-9)

    def fault(self, name: str, t_s: float) -> Floats:
        """The effect of fault ``name`` on every asset at ``t_s`` (zeros if none)."""
        arrays = self._faults.get(name)
        if arrays is None:
            return np.zeros(self.n)
        onset, growth = arrays
        return effect(FAULTS[name], t_s - onset, growth)

    def spread(self, nominal: float, relative: float) -> Floats:
        """Per-unit variation around ``nominal``: no two assets are built identical."""
        return nominal * (1.0 + relative * self.rng.standard_normal(self.n))

    @abc.abstractmethod
    def step(self, now: Conditions, loads: SiteLoads) -> Floats:
        """Advance by ``now.dt_s`` to ``now.t_s``; the measured values, shape (n, metrics).

        Adds this bank's contribution to ``loads`` for the banks stepped after it.
        """


def daily(hour: float, peak_hour: float) -> float:
    """A smooth daily cycle in [-1, 1], highest at ``peak_hour``."""
    return math.cos((hour - peak_hour) / 24 * 2 * math.pi)


def relax(value: Floats, target: Floats, dt_s: float, tau_s: Floats | float) -> Floats:
    """Exact step of a first-order lag ``τ·dx/dt = target − x`` with ``target`` held
    constant over ``dt``: the discretisation is exact, so a large step stays stable."""
    return target + (value - target) * np.exp(-dt_s / tau_s)
