"""Chillers: the cooling load of a site through a COP curve, with condenser fouling.

``COP = COP_nom · f(PLR) · g(T_out) / (1 + fouling)``: part-load efficiency peaks near
75 % load, every kelvin of outdoor (condensing) temperature above the rating point
costs about 2 %, and fouling raises the lift. Power is load / COP; when the load
exceeds capacity the chilled-water supply temperature rises.
"""

from __future__ import annotations

import numpy as np

from trellis.sim.bank import Bank, Conditions, Floats, Ints, SiteLoads, daily

__all__ = ["ChillerBank", "cop"]

COP_NOMINAL = 5.5
RATED_OUTDOOR_C = 30.0
CHW_SUPPLY_C = 7.0


def cop(part_load: Floats, outdoor_c: Floats, fouling: Floats) -> Floats:
    """Coefficient of performance at a part-load ratio, outdoor temperature and fouling."""
    plr = np.clip(part_load, 0.1, 1.2)
    curve = 1.0 - 0.8 * (plr - 0.75) ** 2
    lift = 1.0 - 0.02 * (outdoor_c - RATED_OUTDOOR_C)
    return COP_NOMINAL * curve * np.clip(lift, 0.5, 1.4) / (1.0 + fouling)


class ChillerBank(Bank):
    """Every chiller; each cools the zones of its site plus a process base load."""

    kind = "chiller"
    model = "chiller"
    metrics = ("load", "power", "cop", "chw_temp")

    def __init__(
        self,
        ids: list[str],
        sites: Ints,
        rng: np.random.Generator,
        capacity_kw: float = 150.0,
        base_load_kw: float = 40.0,
    ) -> None:
        super().__init__(ids, sites, rng)
        self.capacity_kw = self.spread(capacity_kw, 0.05)
        self.base_load_kw = base_load_kw
        self._per_site = np.bincount(sites).astype(np.float64) if self.n else np.zeros(0)

    def step(self, now: Conditions, loads: SiteLoads) -> Floats:
        noise = self.rng.standard_normal((self.n, 4))
        site_cooling = loads.cooling_kw[self.sites] / self._per_site[self.sites]
        base = self.base_load_kw * (1.0 + 0.3 * daily(now.hour, 15.0))
        load = np.maximum(site_cooling + base * (1.0 + 0.05 * noise[:, 0]), 0.0)
        part = load / self.capacity_kw
        efficiency = cop(part, now.outdoor_c[self.sites], self.fault("fouling", now.t_s))
        power = load / efficiency
        np.add.at(loads.electric_kw, self.sites, power)
        out = np.empty((self.n, len(self.metrics)))
        out[:, 0] = load
        out[:, 1] = power * (1 + 0.01 * noise[:, 1])
        out[:, 2] = efficiency * (1 + 0.01 * noise[:, 2])
        out[:, 3] = CHW_SUPPLY_C + 3.0 * np.maximum(part - 1.0, 0.0) + 0.1 * noise[:, 3]
        return out
