"""Evaluation of threshold rules on a batch: a pure function of state and readings.

Time is event time (the reading's timestamp), so a replay or a burst evaluates the
same way as live data. A reading no newer than the last one seen for its series is
ignored: a redelivered duplicate or a late straggler cannot re-fire or clear an
alert out of order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from trellis.core.types import Reading
from trellis.rules.model import ThresholdRule

__all__ = ["SeriesState", "Transition", "evaluate"]


@dataclass(slots=True)
class SeriesState:
    """Where one rule stands for one device."""

    last_ts: int = -1
    since_ms: int | None = None
    raised: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """A change the alert service must record."""

    kind: Literal["raise", "clear"]
    rule: ThresholdRule
    tenant: str
    device: str
    ts: int
    value: float


def evaluate(
    rules_by_metric: dict[str, list[ThresholdRule]],
    states: dict[tuple[str, str, str], SeriesState],
    readings: Iterable[Reading],
    model_of: Callable[[str, str], str | None],
) -> list[Transition]:
    """Advance ``states`` (keyed by rule id, tenant, device) over ``readings``.

    ``rules_by_metric`` holds one tenant's enabled rules; ``model_of`` names a
    device's model, for rules that select by model.
    """
    transitions: list[Transition] = []
    for reading in readings:
        rules = rules_by_metric.get(reading.metric)
        if not rules:
            continue
        for rule in rules:
            if rule.model is not None and model_of(reading.tenant, reading.device) != rule.model:
                continue
            key = (rule.id, reading.tenant, reading.device)
            state = states.get(key)
            if state is None:
                state = states[key] = SeriesState()
            if reading.ts <= state.last_ts:
                continue
            state.last_ts = reading.ts
            value = reading.value
            if state.raised:
                if not rule.holds(value):
                    state.raised = False
                    state.since_ms = None
                    transitions.append(
                        Transition("clear", rule, reading.tenant, reading.device, reading.ts, value)
                    )
            elif rule.trips(value):
                if state.since_ms is None:
                    state.since_ms = reading.ts
                if reading.ts - state.since_ms >= rule.for_s * 1000:
                    state.raised = True
                    transitions.append(
                        Transition("raise", rule, reading.tenant, reading.device, reading.ts, value)
                    )
            else:
                state.since_ms = None
    return transitions
