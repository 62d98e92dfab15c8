"""What ``trellis demo`` seeds: rules that the simulated fleet will trip."""

from __future__ import annotations

from trellis.core.types import AlertSeverity
from trellis.rules.model import ThresholdRule

__all__ = ["DEMO_RULES"]

DEMO_RULES: tuple[ThresholdRule, ...] = (
    ThresholdRule(
        id="pump-vibration-high",
        name="Pump bearing vibration high",
        model="pump",
        metric="vibration",
        op=">",
        threshold=7.1,  # ISO 10816-3 zone C/D boundary for medium machines, mm/s RMS
        clear_threshold=4.5,
        for_s=5,
        severity=AlertSeverity.CRITICAL,
    ),
    ThresholdRule(
        id="pump-motor-overheat",
        name="Pump motor overheating",
        model="pump",
        metric="temperature",
        op=">",
        threshold=80.0,
        clear_threshold=75.0,
        for_s=10,
        severity=AlertSeverity.MAJOR,
    ),
    ThresholdRule(
        id="room-co2-high",
        name="Room CO2 high",
        model="room",
        metric="co2",
        op=">",
        threshold=1500.0,
        clear_threshold=1200.0,
        for_s=60,
        severity=AlertSeverity.WARNING,
    ),
    ThresholdRule(
        id="room-too-warm",
        name="Room too warm",
        model="room",
        metric="temperature",
        op=">",
        threshold=28.0,
        clear_threshold=26.0,
        for_s=60,
        severity=AlertSeverity.MINOR,
    ),
)
