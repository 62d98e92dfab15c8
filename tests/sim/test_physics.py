"""The physics of the simulated assets, checked against their closed forms."""

from __future__ import annotations

import math

import numpy as np

from trellis.sim.bank import Conditions, SiteLoads
from trellis.sim.chillers import cop
from trellis.sim.engine import FaultPlan, Plan, Simulation, SitePlan
from trellis.sim.faults import FAULTS
from trellis.sim.pumps import PumpBank, operating_point, shaft_power_kw
from trellis.sim.zones import ZoneBank

MONDAY = 1_736_121_600_000  # 2025-01-06T00:00:00Z


def _night(t_s: float, dt_s: float, outdoor: float) -> Conditions:
    return Conditions(
        t_s=t_s,
        dt_s=dt_s,
        hour=2.0,
        occupied=False,
        outdoor_c=np.array([outdoor]),
        solar=np.array([0.0]),
    )


def _loads() -> SiteLoads:
    return SiteLoads(cooling_kw=np.zeros(1), electric_kw=np.zeros(1))


def test_pump_power_rises_with_flow_along_the_curve() -> None:
    """Opening the valve moves the operating point to more flow, less head, more power."""
    valve = np.linspace(0.2, 1.0, 9)
    flow, head = operating_point(valve, np.full(9, 40.0))
    power = shaft_power_kw(flow)
    assert np.all(np.diff(flow) > 0)
    assert np.all(np.diff(head) < 0)
    assert np.all(np.diff(power) > 0)


def test_zone_with_hvac_off_relaxes_to_outdoor_with_its_rc_time_constant() -> None:
    """After one τ = R·C with the HVAC off, 1/e of the indoor–outdoor gap remains."""
    zones = ZoneBank(["zone-0001"], np.zeros(1, dtype=np.int64), np.random.default_rng(1))
    zones.hvac_enabled = False
    tau = float(zones.tau_s[0])
    start, outdoor = float(zones.temperature[0]), 2.0
    steps = 200
    for i in range(steps):
        zones.step(_night((i + 1) * tau / steps, tau / steps, outdoor), _loads())
    gap = float(zones.temperature[0]) - outdoor
    assert math.isclose(gap, (start - outdoor) / math.e, rel_tol=1e-9)


def test_bearing_wear_raises_the_bearing_band_and_heats_the_motor() -> None:
    """A worn bearing shows in its own band first and warms the motor through friction."""
    rng = np.random.default_rng(3)
    pumps = PumpBank(["pump-0001", "pump-0002"], np.zeros(2, dtype=np.int64), rng, 60.0)
    pumps.inject(1, FAULTS["bearing_wear"], onset_s=0.0, growth_s=600.0)
    for i in range(1, 3001):
        now = Conditions(
            t_s=float(i),
            dt_s=1.0,
            hour=10.0,
            occupied=True,
            outdoor_c=np.array([10.0]),
            solar=np.array([0.5]),
        )
        values = pumps.step(now, _loads())
    bearing = PumpBank.metrics.index("vib_bearing")
    temperature = PumpBank.metrics.index("temperature")
    assert values[1, bearing] > 10 * values[0, bearing]
    assert values[1, temperature] > values[0, temperature] + 5


def _twin_pumps(fault: str, growth_s: float, hours: float) -> np.ndarray:
    """Two identical pumps, the first with ``fault`` from the start; last values."""
    plan = Plan(
        sites=[SitePlan("a", {"pump": 2}, 60.0)],
        start_ms=MONDAY,
        duration_s=hours * 3600,
        step_s=60.0,
        seed=5,
        faults=[FaultPlan("pump-0001", fault, onset_s=0.0, growth_s=growth_s)],
    )
    sim = Simulation(plan)
    bank = sim.banks[0]
    assert isinstance(bank, PumpBank)
    bank.head0[:] = 40.0
    bank.phase[:] = 0.0
    *_, (_, frames) = sim
    return frames[0].values


def test_cavitation_drops_pressure_and_raises_high_frequency_vibration() -> None:
    """Cavitation costs head (pressure) and shows in the HF band."""
    faulty, healthy = _twin_pumps("cavitation", 3600.0, 6)
    pressure, hf = PumpBank.metrics.index("pressure"), PumpBank.metrics.index("vib_hf")
    assert faulty[pressure] < healthy[pressure] - 0.3
    assert faulty[hf] > healthy[hf] + 3


def test_seal_leak_delivers_less_and_costs_more_power() -> None:
    """A leaking seal: at the same valve the pump moves more, delivers less, at lower
    pressure and higher power."""
    valve, head0 = np.full(2, 0.6), np.full(2, 40.0)
    (flow, leaky_flow), (head, leaky_head) = operating_point(valve, head0, np.array([0.0, 20.0]))
    assert leaky_flow < flow
    assert leaky_head < head
    assert shaft_power_kw(np.array([leaky_flow + 20.0]))[0] > shaft_power_kw(np.array([flow]))[0]
    faulty, healthy = _twin_pumps("seal_leak", 3600.0, 8)
    power = PumpBank.metrics.index("power")
    assert faulty[power] > healthy[power] * 1.05


def test_chiller_cop_falls_with_fouling_and_outdoor_heat() -> None:
    """Fouling and a hotter condenser both cost COP; part load peaks near 75 %."""
    base = cop(np.array([0.75]), np.array([30.0]), np.array([0.0]))[0]
    assert cop(np.array([0.75]), np.array([30.0]), np.array([0.2]))[0] < base
    assert cop(np.array([0.75]), np.array([38.0]), np.array([0.0]))[0] < base
    assert cop(np.array([0.3]), np.array([30.0]), np.array([0.0]))[0] < base


def test_stuck_damper_builds_co2_in_an_occupied_zone() -> None:
    """With the outdoor-air damper stuck, CO2 in occupied hours ends far above healthy."""
    plan = Plan(
        sites=[SitePlan("a", {"zone": 2}, 300.0)],
        start_ms=MONDAY + 8 * 3_600_000,
        duration_s=6 * 3600,
        step_s=300.0,
        seed=2,
        faults=[FaultPlan("zone-0001", "stuck_damper", onset_s=0.0)],
    )
    *_, (_, frames) = Simulation(plan)
    co2 = frames[0].values[:, 1]
    assert co2[0] > 1500 > 1000 > co2[1]


def test_meter_sums_pump_and_chiller_power_of_its_site() -> None:
    """The site meter reads the electrical power of its pumps and chiller plus the building."""
    plan = Plan(
        sites=[
            SitePlan("a", {"pump": 3, "chiller": 1, "meter": 1}, 60.0),
            SitePlan("b", {"pump": 1, "meter": 1}, 60.0),
        ],
        start_ms=MONDAY,
        duration_s=60.0,
        step_s=60.0,
        seed=1,
    )
    sim = Simulation(plan)
    frames = {frame.kind: frame for frame in sim.step()}
    pumps, chiller, meter = frames["pump"], frames["chiller"], frames["meter"]
    power = PumpBank.metrics.index("power")
    site_a = pumps.values[:3, power].sum() + chiller.values[0, 1] + 20.0 * 0.35
    assert math.isclose(meter.values[0, 0], site_a, rel_tol=0.02)
    assert math.isclose(meter.values[1, 0], pumps.values[3, power] + 7.0, rel_tol=0.02)
