"""Centrifugal pumps: operating point on the pump curve, motor heat, bearing vibration.

Physics, per pump (arrays over the fleet):

* pump curve ``H = H0 − k·Q²`` meets the system curve ``H = Hs + r·Q²``, where the
  system resistance ``r = r0 / v²`` follows a throttling valve ``v`` that tracks the
  day's demand: the operating flow is ``Q = √((H0 − Hs) / (k + r))``;
* shaft power rises linearly with flow from shut-off (≈45 % of the power at the best
  efficiency point, typical of radial impellers), so power rises with flow along the
  curve; electrical power divides by the motor efficiency;
* motor winding temperature is a first-order thermal model driven by the losses
  (motor losses + bearing friction) through a thermal resistance;
* vibration velocity is reported as overall RMS (ISO 10816, mm/s) and three spectral
  bands: 1× running speed (unbalance), the bearing defect band, high frequency
  (cavitation and off-design recirculation).

Faults: bearing wear (bearing band grows, friction heats the motor), cavitation (head
falls, pressure ripples, HF band rises), seal leak (the pump moves flow it never
delivers: downstream flow falls, discharge pressure sags, power rises).
"""

from __future__ import annotations

import numpy as np

from trellis.sim.bank import Bank, Conditions, Floats, Ints, SiteLoads, relax

__all__ = ["PumpBank", "operating_point", "shaft_power_kw"]

RHO_G = 1000.0 * 9.81  # water, N/m³
H0_M = 40.0  # shut-off head
Q_MAX_M3H = 220.0  # flow at zero head
Q_BEP_M3H = 150.0  # best efficiency point
ETA_BEP = 0.78
ETA_MOTOR = 0.92
HS_M = 10.0  # static head of the system
R0 = 4.5e-4  # system resistance with the valve fully open, m/(m³/h)²
SUCTION_BAR = 1.0
AMBIENT_C = 25.0
K_CURVE = H0_M / Q_MAX_M3H**2
P_BEP_KW = RHO_G * (Q_BEP_M3H / 3600) * (H0_M - K_CURVE * Q_BEP_M3H**2) / ETA_BEP / 1000
SHUTOFF_FRACTION = 0.45


def operating_point(
    valve: Floats, head0: Floats, leak: Floats | float = 0.0
) -> tuple[Floats, Floats]:
    """Delivered flow (m³/h) and head (m) where the pump curve meets the throttled
    system curve. A leak ``L`` bypasses the system: the pump moves ``Q + L`` at the
    head the system needs for ``Q``, i.e. ``H0 − k(Q + L)² = Hs + r·Q²``."""
    r = R0 / np.maximum(valve, 0.05) ** 2
    a = K_CURVE + r
    b = 2 * K_CURVE * leak
    c = K_CURVE * np.square(leak) - (head0 - HS_M)
    flow = np.maximum((-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a), 0.0)
    return flow, HS_M + r * flow**2


def shaft_power_kw(flow_m3h: Floats) -> Floats:
    """Shaft power along the curve: linear from shut-off to beyond the BEP."""
    return P_BEP_KW * (SHUTOFF_FRACTION + (1 - SHUTOFF_FRACTION) * flow_m3h / Q_BEP_M3H)


class PumpBank(Bank):
    """Every pump of a fleet, stepped as arrays."""

    kind = "pump"
    model = "pump"
    metrics = (
        "flow",
        "pressure",
        "power",
        "temperature",
        "vibration",
        "vib_1x",
        "vib_bearing",
        "vib_hf",
    )

    def __init__(
        self,
        ids: list[str],
        sites: Ints,
        rng: np.random.Generator,
        thermal_tau_s: float = 1200.0,
    ) -> None:
        super().__init__(ids, sites, rng)
        self.head0 = self.spread(H0_M, 0.02)
        self.thermal_r = self.spread(40.0 / (P_BEP_KW / ETA_MOTOR - P_BEP_KW), 0.05)  # K/kW
        self.unbalance = np.abs(self.spread(1.2, 0.15))
        self.phase = self.rng.uniform(-1.5, 1.5, self.n)  # hours: not every valve moves at once
        self.thermal_tau_s = thermal_tau_s
        self.valve = np.full(self.n, 0.6)
        self.motor_c: Floats | None = None

    def step(self, now: Conditions, loads: SiteLoads) -> Floats:
        rng = self.rng
        demand = 0.55 + 0.25 * np.cos((now.hour - 14.0 - self.phase) / 24 * 2 * np.pi)
        # The valve follows demand with a little AR(1) wander (operators, process upsets).
        self.valve = relax(self.valve, demand, now.dt_s, 300.0)
        self.valve = np.clip(self.valve + 0.003 * rng.standard_normal(self.n), 0.1, 1.0)

        bearing = self.fault("bearing_wear", now.t_s)
        cavitation = self.fault("cavitation", now.t_s)
        leak = self.fault("seal_leak", now.t_s)

        head0 = self.head0 * (1 - 0.25 * cavitation**2)
        flow, head = operating_point(self.valve, head0, leak)
        moved = flow + leak
        shaft = shaft_power_kw(moved) * (1 + 0.05 * cavitation)
        electric = shaft / ETA_MOTOR
        friction_kw = 0.05 * bearing
        losses = electric - shaft + friction_kw
        target_c = AMBIENT_C + self.thermal_r * losses
        if self.motor_c is None:
            self.motor_c = target_c.copy()  # a pump running before the scenario began
        self.motor_c = relax(self.motor_c, target_c, now.dt_s, self.thermal_tau_s)

        ratio = moved / Q_BEP_M3H
        noise = rng.standard_normal((self.n, 8))
        v1x = self.unbalance * (0.8 + 0.2 * ratio) + 0.05 * noise[:, 0]
        vbearing = 0.3 + bearing + 0.15 * noise[:, 1] * (1 + 0.1 * bearing)
        vhf = 0.2 + 0.3 * np.abs(ratio - 1) + 6.0 * cavitation + 0.05 * noise[:, 2]
        v1x, vbearing, vhf = (np.abs(v) for v in (v1x, vbearing, vhf))
        overall = np.sqrt(v1x**2 + vbearing**2 + vhf**2)
        pressure = SUCTION_BAR + RHO_G * head / 1e5
        pressure = pressure + (0.03 + 0.4 * cavitation) * noise[:, 3]

        np.add.at(loads.electric_kw, self.sites, electric)
        out = np.empty((self.n, len(self.metrics)))
        out[:, 0] = np.maximum(flow + 1.5 * noise[:, 4], 0.0)
        out[:, 1] = np.maximum(pressure, 0.0)
        out[:, 2] = electric * (1 + 0.01 * noise[:, 5])
        out[:, 3] = self.motor_c + 0.2 * noise[:, 6]
        out[:, 4] = overall
        out[:, 5] = v1x
        out[:, 6] = vbearing
        out[:, 7] = vhf
        return out
