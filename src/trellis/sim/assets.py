"""Single simulated assets: small, seeded, scalar step functions.

Kept for callers that step one asset at a time; fleets (``Fleet``, scenarios, the
benchmarks) run on the vectorised banks of :mod:`trellis.sim.engine` instead, which
carry the fuller physics (pump curve, RC zones, chillers, meters).

Each asset keeps its own state and random generator, so a fleet built from one seed
produces the same telemetry every run. ``step(ts_ms)`` advances the asset to an
instant and returns its metric values; faults are injected by setting their onset.
"""

from __future__ import annotations

import abc
import math
import random
from dataclasses import dataclass, field

__all__ = ["Pump", "Room", "SimAsset"]

_DAY_MS = 86_400_000


def _daily(ts_ms: int, peak_hour: float) -> float:
    """A smooth daily cycle in [-1, 1], highest at ``peak_hour`` (UTC)."""
    hours = (ts_ms % _DAY_MS) / 3_600_000
    return math.cos((hours - peak_hour) / 24 * 2 * math.pi)


@dataclass
class SimAsset(abc.ABC):
    """What every simulated asset has: an id, a model, a generator, a fault onset."""

    device_id: str
    seed: int
    fault_onset_ms: int | None = None
    rng: random.Random = field(init=False)
    _last_ms: int | None = field(default=None, init=False)

    model = "asset"

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _dt_s(self, ts_ms: int) -> float:
        dt = 1.0 if self._last_ms is None else max(0.0, (ts_ms - self._last_ms) / 1000)
        self._last_ms = ts_ms
        return dt

    def fault_age_s(self, ts_ms: int) -> float:
        """Seconds since the fault began, 0 before it (or without one)."""
        if self.fault_onset_ms is None or ts_ms < self.fault_onset_ms:
            return 0.0
        return (ts_ms - self.fault_onset_ms) / 1000

    @abc.abstractmethod
    def step(self, ts_ms: int) -> dict[str, float]:
        """Metric values at ``ts_ms``."""


@dataclass
class Pump(SimAsset):
    """A centrifugal pump: load follows the day, motor temperature lags the load
    (first-order thermal model), vibration is ISO 10816 "good" (~2 mm/s) until a
    bearing fault makes it grow exponentially and heats the motor."""

    model = "pump"
    motor_temp: float = 55.0

    def step(self, ts_ms: int) -> dict[str, float]:
        dt = self._dt_s(ts_ms)
        load = 0.7 + 0.2 * _daily(ts_ms, peak_hour=14) + self.rng.gauss(0, 0.01)
        age = self.fault_age_s(ts_ms)
        bearing = 0.0 if age == 0 else math.expm1(age / 8)
        target = 30.0 + 45.0 * load + min(60.0, 4.0 * bearing)
        # Thermal time constant of about 30 s, compressed so a demo shows it.
        self.motor_temp += (target - self.motor_temp) * (1 - math.exp(-dt / 30))
        vibration = 1.8 + 0.4 * load + min(60.0, 0.8 * bearing) + abs(self.rng.gauss(0, 0.15))
        pressure = 2.0 + 4.5 * load * load + self.rng.gauss(0, 0.05)
        return {
            "temperature": round(self.motor_temp + self.rng.gauss(0, 0.2), 2),
            "vibration": round(vibration, 3),
            "pressure": round(max(0.0, pressure), 3),
        }


@dataclass
class Room(SimAsset):
    """An office room: occupancy follows working hours, CO2 builds with people and
    decays with ventilation, temperature follows outdoor swing and body heat. A fault
    is an HVAC failure: ventilation stops and the room heats up."""

    model = "room"
    capacity: int = 12
    co2: float = 450.0
    temperature: float = 21.0

    def step(self, ts_ms: int) -> dict[str, float]:
        dt = self._dt_s(ts_ms)
        hour = (ts_ms % _DAY_MS) / 3_600_000
        busy = 8 <= hour < 18
        expected = self.capacity * (0.6 + 0.3 * _daily(ts_ms, peak_hour=13)) if busy else 0.0
        occupancy = max(0, min(self.capacity, round(expected + self.rng.gauss(0, 1))))
        failed = self.fault_age_s(ts_ms) > 0
        ventilation = 0.0005 if failed else 0.01  # air changes per second, compressed
        co2_target = 420.0 + occupancy * 90.0 / max(ventilation * 100, 0.05)
        self.co2 += (co2_target - self.co2) * (1 - math.exp(-dt * ventilation * 5))
        setpoint = 21.0 + 0.8 * _daily(ts_ms, peak_hour=15) + 0.08 * occupancy
        if failed:
            setpoint += min(12.0, self.fault_age_s(ts_ms) / 10)
        self.temperature += (setpoint - self.temperature) * (1 - math.exp(-dt / 20))
        return {
            "temperature": round(self.temperature + self.rng.gauss(0, 0.05), 2),
            "co2": round(max(380.0, self.co2 + self.rng.gauss(0, 5)), 1),
            "occupancy": float(occupancy),
        }
