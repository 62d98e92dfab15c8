"""HVAC zones: a one-node RC thermal model, ventilation and CO2 from occupancy.

Temperature (per zone): ``C·dT/dt = (T_out − T)/R + Q_people + Q_sun + Q_hvac``, so
with the HVAC off and no gains a zone relaxes toward the outdoor temperature with the
time constant ``τ = R·C``. The HVAC is a proportional controller on the setpoint while
the schedule says occupied. CO2: ``V·dC/dt = G·n + q·(C_out − C)`` with the outdoor-air
flow ``q`` set by a demand-controlled damper. Both are stepped exactly (inputs held
over the step), so the model is stable at any step size.

Faults: stuck damper (outdoor air nearly shut: CO2 climbs), sensor drift (the reading
walks away from the air temperature), schedule override (HVAC held off when occupied).
"""

from __future__ import annotations

import numpy as np

from trellis.sim.bank import Bank, Conditions, Floats, Ints, SiteLoads, daily, relax

__all__ = ["ZoneBank"]

PERSON_KW = 0.1  # sensible heat of a seated adult
PERSON_CO2_M3S = 5.2e-6  # CO2 exhaled by a seated adult
OUTDOOR_CO2_PPM = 420.0
HVAC_GAIN_KW_PER_K = 4.0
HVAC_MAX_KW = 8.0
SOLAR_KW = 1.2
SETPOINT_C = 21.5


class ZoneBank(Bank):
    """Every HVAC zone of a fleet, stepped as arrays."""

    kind = "zone"
    model = "room"
    metrics = ("temperature", "co2", "occupancy")

    def __init__(
        self,
        ids: list[str],
        sites: Ints,
        rng: np.random.Generator,
        resistance_k_per_kw: float = 2.0,
        capacitance_kj_per_k: float = 2700.0,
    ) -> None:
        super().__init__(ids, sites, rng)
        self.resistance = self.spread(resistance_k_per_kw, 0.1)
        self.capacitance = self.spread(capacitance_kj_per_k, 0.1)
        self.capacity = np.maximum(self.rng.integers(6, 19, self.n), 1)
        self.volume_m3 = 20.0 * self.capacity
        self.max_air_m3s = 0.0125 * self.capacity  # 12.5 l/s per person at full damper
        self.temperature = np.full(self.n, SETPOINT_C)
        self.co2 = np.full(self.n, OUTDOOR_CO2_PPM + 50.0)
        self.hvac_enabled = True

    @property
    def tau_s(self) -> Floats:
        """Thermal time constant of each zone, seconds."""
        return self.resistance * self.capacitance

    def step(self, now: Conditions, loads: SiteLoads) -> Floats:
        rng = self.rng
        outdoor = now.outdoor_c[self.sites]
        if now.occupied:
            share = np.clip(0.6 + 0.3 * daily(now.hour, 13.0), 0.0, 1.0)
            people = rng.binomial(self.capacity, share).astype(np.float64)
        else:
            people = np.zeros(self.n)
        override = self.fault("schedule_override", now.t_s) > 0
        hvac_on = np.full(self.n, now.occupied and self.hvac_enabled) & ~override
        hvac_kw = np.where(
            hvac_on,
            np.clip(
                HVAC_GAIN_KW_PER_K * (SETPOINT_C - self.temperature), -HVAC_MAX_KW, HVAC_MAX_KW
            ),
            0.0,
        )
        gains = people * PERSON_KW + SOLAR_KW * now.solar[self.sites] + hvac_kw
        self.temperature = relax(
            self.temperature, outdoor + self.resistance * gains, now.dt_s, self.tau_s
        )

        damper = np.where(hvac_on, 0.3 + 0.7 * people / self.capacity, 0.1)
        damper = np.where(self.fault("stuck_damper", now.t_s) > 0, 0.05, damper)
        air = damper * self.max_air_m3s
        co2_target = OUTDOOR_CO2_PPM + 1e6 * PERSON_CO2_M3S * people / air
        self.co2 = relax(self.co2, co2_target, now.dt_s, self.volume_m3 / air)

        np.add.at(loads.cooling_kw, self.sites, np.maximum(-hvac_kw, 0.0))
        noise = rng.standard_normal((self.n, 2))
        out = np.empty((self.n, len(self.metrics)))
        out[:, 0] = self.temperature + self.fault("sensor_drift", now.t_s) + 0.05 * noise[:, 0]
        out[:, 1] = np.maximum(self.co2 + 8.0 * noise[:, 1], 350.0)
        out[:, 2] = people
        return out
