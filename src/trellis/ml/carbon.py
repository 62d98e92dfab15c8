"""Energy and carbon per inference: measured CPU time × a power model × grid intensity.

The power model is the marginal draw of one busy core (watts); the grid intensity is
gCO2e per kWh of the site's supply. Both are settings, because both are facts about
where Trellis runs, not about the model.
"""

from __future__ import annotations

import msgspec

__all__ = ["CarbonModel", "Footprint"]


class Footprint(msgspec.Struct, frozen=True):
    """Totals for a set of predictions."""

    predictions: int
    cpu_s: float
    energy_wh: float
    gco2e: float
    gco2e_per_1k: float


class CarbonModel(msgspec.Struct, frozen=True):
    """``cpu_power_w`` per busy core, ``grid_gco2e_per_kwh`` of the supply."""

    cpu_power_w: float
    grid_gco2e_per_kwh: float

    def footprint(self, predictions: int, cpu_us: int) -> Footprint:
        """The energy and carbon of ``predictions`` that used ``cpu_us`` of CPU time."""
        cpu_s = cpu_us / 1e6
        energy_wh = cpu_s * self.cpu_power_w / 3600
        gco2e = energy_wh / 1000 * self.grid_gco2e_per_kwh
        per_1k = gco2e / predictions * 1000 if predictions else 0.0
        return Footprint(predictions, cpu_s, energy_wh, gco2e, per_1k)
