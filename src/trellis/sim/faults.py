"""Faults the simulator can inject, how each grows, and the ground truth it leaves.

A fault has an onset and a growth time. Its *effect* (in the unit of the symptom it
causes, e.g. mm/s of bearing-band vibration) follows a closed-form law of the fault's
age, so the instant it becomes observable and the instant the asset fails are known
exactly, not estimated: that is what lets an experiment compute detection lead time,
precision and recall without judgement calls.
"""

from __future__ import annotations

import enum
import math

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["FAULTS", "FaultKind", "FaultRecord", "Growth", "effect"]

Floats = npt.NDArray[np.float64]


class Growth(enum.StrEnum):
    """How a fault's effect develops with its age ``a`` and growth time ``g``."""

    #: ``scale · (e^(a/g) − 1)``: wear that feeds on itself (bearings, cavitation erosion).
    EXPONENTIAL = "exponential"
    #: ``failure · a / g``: a steady process (fouling, sensor drift); ``g`` reaches failure.
    LINEAR = "linear"
    #: 1 from the onset: something breaks or is switched (stuck damper, stuck sensor).
    STEP = "step"


class FaultKind(msgspec.Struct, frozen=True):
    """One kind of fault: the asset kind it hits, its law, and its thresholds.

    ``observable`` is the effect at which the symptom leaves the noise band of the
    channel it shows in (about three standard deviations of that channel's noise);
    ``failure`` the effect at which the asset is out of service (``None``: the fault
    degrades but never fails the asset). For step faults ``observable_after_s`` is the
    physical lag before the symptom shows (e.g. the CO2 time constant of a zone).
    """

    name: str
    asset: str
    growth: Growth
    unit: str
    scale: float = 1.0
    cap: float = math.inf
    observable: float = 0.0
    failure: float | None = None
    observable_after_s: float = 0.0
    description: str = ""


FAULTS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind(
            "bearing_wear",
            "pump",
            Growth.EXPONENTIAL,
            "mm/s",
            scale=0.05,
            cap=45.0,
            observable=0.45,
            failure=11.0,  # bearing band alone above ISO 10816-3 zone D for medium machines
            description="vibration grows at the bearing defect frequencies, the motor warms",
        ),
        FaultKind(
            "cavitation",
            "pump",
            Growth.EXPONENTIAL,
            "NPSH margin lost (fraction)",
            scale=0.01,
            cap=1.0,
            observable=0.1,
            failure=0.9,
            description="suction starves: head drops, pressure ripples, broadband HF vibration",
        ),
        FaultKind(
            "seal_leak",
            "pump",
            Growth.EXPONENTIAL,
            "m3/h",
            scale=0.2,
            cap=60.0,
            observable=3.0,
            failure=20.0,
            description="the pump moves more than it delivers: flow falls, power rises",
        ),
        FaultKind(
            "stuck_damper",
            "zone",
            Growth.STEP,
            "",
            observable_after_s=1800.0,
            description="outdoor-air damper stuck nearly closed: CO2 builds with occupancy",
        ),
        FaultKind(
            "sensor_drift",
            "zone",
            Growth.LINEAR,
            "K",
            observable=0.5,
            failure=2.0,  # out of a class-B thermometer's calibration tolerance
            description="the temperature sensor reads high by a growing offset",
        ),
        FaultKind(
            "schedule_override",
            "zone",
            Growth.STEP,
            "",
            observable_after_s=1800.0,
            description="the zone's HVAC is held off through occupied hours",
        ),
        FaultKind(
            "fouling",
            "chiller",
            Growth.LINEAR,
            "COP loss (fraction)",
            observable=0.05,
            failure=0.3,
            description="condenser fouling raises lift: COP falls, power rises",
        ),
        FaultKind(
            "stuck_sensor",
            "device",
            Growth.STEP,
            "",
            description="the device repeats its last values",
        ),
        FaultKind(
            "clock_skew",
            "device",
            Growth.STEP,
            "",
            description="the device's clock runs ahead by a fixed offset",
        ),
    )
}


def effect(kind: FaultKind, age_s: Floats, growth_s: Floats) -> Floats:
    """The effect of ``kind`` at each age (seconds since onset; ≤ 0 means not yet)."""
    started = age_s > 0
    age = np.where(started, age_s, 0.0)
    if kind.growth is Growth.EXPONENTIAL:
        value = kind.scale * np.expm1(np.minimum(age / growth_s, 50.0))
    elif kind.growth is Growth.LINEAR:
        value = (kind.failure or 1.0) * age / growth_s
    else:
        value = np.ones_like(age)
    return np.where(started, np.minimum(value, kind.cap), 0.0)


def _age_at(kind: FaultKind, level: float, growth_s: float) -> float | None:
    """Seconds after onset at which the effect reaches ``level`` (None: never)."""
    if level > kind.cap:
        return None
    if kind.growth is Growth.EXPONENTIAL:
        return growth_s * math.log1p(level / kind.scale)
    if kind.growth is Growth.LINEAR:
        return growth_s * level / (kind.failure or 1.0)
    return 0.0


class FaultRecord(msgspec.Struct, frozen=True):
    """Ground truth for one injected fault (epoch milliseconds)."""

    asset: str
    kind: str
    onset_ms: int
    observable_ms: int
    failure_ms: int | None

    @classmethod
    def of(cls, asset: str, kind: FaultKind, onset_ms: int, growth_s: float) -> FaultRecord:
        """The record of ``kind`` starting at ``onset_ms``, its instants in closed form."""
        seen = _age_at(kind, kind.observable, growth_s) if kind.observable else 0.0
        seen = (seen or 0.0) + kind.observable_after_s
        fails = None if kind.failure is None else _age_at(kind, kind.failure, growth_s)
        return cls(
            asset=asset,
            kind=kind.name,
            onset_ms=onset_ms,
            observable_ms=onset_ms + round(seen * 1000),
            failure_ms=None if fails is None else onset_ms + round(fails * 1000),
        )
