"""Synthetic streams for rule tests: readings at exact event times, judged by the runtime."""

from __future__ import annotations

from collections.abc import Iterable

from tests.helpers import NOW_MS, TENANT
from trellis.core.types import Device, Reading
from trellis.rules import AnyRule, CompiledRule, SeriesState, Signal, compile_rule

T0 = NOW_MS - NOW_MS % 60_000
"""A minute boundary, so tumbling buckets start at T0."""


def device_of(device_id: str, **attributes: object) -> Device:
    """A device whose model is the part of its id before the first dash."""
    return Device(TENANT, device_id, device_id.split("-")[0], attributes=dict(attributes))


def series(
    values: Iterable[float],
    *,
    device: str = "pump-1",
    metric: str = "temperature",
    step_s: float = 1,
) -> list[Reading]:
    """Readings one ``step_s`` apart from T0."""
    return [
        Reading(TENANT, device, metric, T0 + round(i * step_s * 1000), float(v))
        for i, v in enumerate(values)
    ]


def at(
    seconds: float, value: float, *, device: str = "pump-1", metric: str = "temperature"
) -> Reading:
    """One reading ``seconds`` after T0."""
    return Reading(TENANT, device, metric, T0 + round(seconds * 1000), value)


class Judge:
    """One rule, its per-device states and the signals it produced, like the engine."""

    def __init__(self, rule: AnyRule | CompiledRule, **devices: Device) -> None:
        self.rule = rule if isinstance(rule, CompiledRule) else compile_rule(rule)
        self.states: dict[str, SeriesState] = {}
        self.devices = devices

    def feed(self, readings: Iterable[Reading]) -> list[Signal]:
        """Feed readings in the order given; the signals they cause."""
        out: list[Signal] = []
        for r in readings:
            device = self.devices.get(r.device) or device_of(r.device)
            if r.metric != self.rule.metric or not self.rule.matches(device):
                continue
            state = self.states.setdefault(r.device, SeriesState())
            self.rule.feed(state, r.tenant, r.device, device, r.ts, r.value, out)
        return out

    def tick(self, seconds: float) -> list[Signal]:
        """Let wall time reach T0 + ``seconds``."""
        out: list[Signal] = []
        for device, state in self.states.items():
            self.rule.tick(state, TENANT, device, T0 + round(seconds * 1000), out)
        return out


def times(signals: Iterable[Signal]) -> list[tuple[str, float]]:
    """``(kind, seconds after T0)`` of each signal: what the tests compare exactly."""
    return [(s.kind, (s.ts - T0) / 1000) for s in signals]
