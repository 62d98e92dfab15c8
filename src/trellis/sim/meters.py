"""Electricity meters: one per site, the sum of every modelled load plus the building's.

Stepped after every other bank, so ``loads.electric_kw`` already holds the pumps' and
chillers' electrical power of the step. Energy integrates power over the step.
"""

from __future__ import annotations

import numpy as np

from trellis.sim.bank import Bank, Conditions, Floats, Ints, SiteLoads

__all__ = ["MeterBank"]


class MeterBank(Bank):
    """Every site meter: active power (kW) and the energy register (kWh)."""

    kind = "meter"
    model = "meter"
    metrics = ("power", "energy")

    def __init__(
        self,
        ids: list[str],
        sites: Ints,
        rng: np.random.Generator,
        building_kw: float = 20.0,
    ) -> None:
        super().__init__(ids, sites, rng)
        self.building_kw = building_kw
        self.energy_kwh = np.zeros(self.n)

    def step(self, now: Conditions, loads: SiteLoads) -> Floats:
        building = self.building_kw * (1.0 if now.occupied else 0.35)
        power = loads.electric_kw[self.sites] + building
        power = power * (1 + 0.002 * self.rng.standard_normal(self.n))
        self.energy_kwh = self.energy_kwh + power * now.dt_s / 3600.0
        return np.column_stack((power, self.energy_kwh))
