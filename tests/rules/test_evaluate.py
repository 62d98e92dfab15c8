"""Threshold rules on the shared runtime: duration, hysteresis, event time, selectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import NOW_MS, TENANT
from tests.rules.streams import Judge
from trellis.core.types import AlertSeverity, Reading
from trellis.rules import Signal, ThresholdRule, parse_rule

HOT = ThresholdRule(
    id="hot",
    metric="temperature",
    op=">",
    threshold=80.0,
    clear_threshold=75.0,
    for_s=10,
    severity=AlertSeverity.MAJOR,
    model="pump",
)


def _series(device: str, values: list[float], step_ms: int = 1000) -> list[Reading]:
    return [
        Reading(TENANT, device, "temperature", NOW_MS + i * step_ms, value)
        for i, value in enumerate(values)
    ]


def _run(readings: list[Reading], judge: Judge | None = None) -> list[Signal]:
    return (judge or Judge(HOT)).feed(readings)


def test_raises_only_after_the_duration_holds() -> None:
    """The alert fires at the first reading 10 s after the condition began, not before."""
    transitions = _run(_series("pump-1", [70, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96]))
    assert [(t.kind, t.ts - NOW_MS) for t in transitions] == [("raise", 11_000)]


def test_condition_interrupted_restarts_the_duration() -> None:
    """A dip below the threshold resets the timer, so no alert fires."""
    values = [85.0] * 9 + [79.0] + [85.0] * 9
    assert _run(_series("pump-1", values)) == []


def test_hysteresis_clears_only_below_clear_threshold() -> None:
    """Once raised, values between 75 and 80 keep the alert; below 75 clears it once."""
    values = [90.0] * 12 + [78.0, 76.0, 75.0, 74.9, 70.0]
    transitions = _run(_series("pump-1", values))
    assert [t.kind for t in transitions] == ["raise", "clear"]
    assert transitions[1].value == 74.9


def test_duplicates_and_late_readings_are_ignored() -> None:
    """A redelivered or older reading neither advances the timer nor clears the alert."""
    states = Judge(HOT)
    first = _series("pump-1", [90.0] * 12)
    assert [t.kind for t in _run(first, states)] == ["raise"]
    late = Reading(TENANT, "pump-1", "temperature", NOW_MS + 500, 10.0)
    assert _run([*first, late], states) == []


def test_model_selector_limits_the_rule() -> None:
    """A rule for pumps ignores rooms reporting the same metric."""
    assert _run(_series("room-1", [99.0] * 20)) == []


def test_devices_keep_separate_state() -> None:
    """Two devices interleaved in one batch are timed independently."""
    a = _series("pump-1", [90.0] * 12)
    b = _series("pump-2", [90.0] * 5 + [50.0] * 7)
    interleaved = [r for pair in zip(a, b, strict=True) for r in pair]
    assert [(t.kind, t.device) for t in _run(interleaved)] == [("raise", "pump-1")]


def test_batch_boundaries_do_not_change_the_outcome() -> None:
    """Evaluating one batch or the same readings one at a time gives the same transitions."""
    readings = _series("pump-1", [85, 90, 70, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 60])
    whole = _run(readings)
    states = Judge(HOT)
    pieces = [t for r in readings for t in _run([r], states)]
    assert [(t.kind, t.ts) for t in whole] == [(t.kind, t.ts) for t in pieces]


@given(st.lists(st.floats(min_value=0, max_value=200), max_size=60), st.integers(1, 7))
def test_raise_and_clear_alternate(values: list[float], chunk: int) -> None:
    """Whatever the values and batching, transitions alternate raise, clear, raise…"""
    readings = _series("pump-1", values)
    states = Judge(HOT)
    kinds = [
        t.kind
        for i in range(0, len(readings), chunk)
        for t in _run(readings[i : i + chunk], states)
    ]
    assert all(kind == ("raise" if i % 2 == 0 else "clear") for i, kind in enumerate(kinds))


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (b'{"id": "x", "metric": "t", "op": ">", "threshold": 1}', "severity"),
        (b'{"id": "x", "metric": "t", "op": "~", "threshold": 1, "severity": "major"}', "op"),
        (b'{"id": "X Y", "metric": "t", "op": ">", "threshold": 1, "severity": "major"}', "id"),
        (
            b'{"id": "x", "metric": "t", "op": ">", "threshold": 1, "severity": "major",'
            b' "clear_threshold": 2}',
            "clear_threshold",
        ),
        (
            b'{"id": "x", "metric": "t", "op": ">", "threshold": "hot", "severity": "major"}',
            "$.threshold",
        ),
        (
            b'{"id": "x", "metric": "t", "op": ">", "threshold": 1, "severity": "major",'
            b' "oops": 1}',
            "oops",
        ),
        (
            b'{"id": "x", "metric": "t", "op": ">", "threshold": 1, "severity": "major",'
            b' "for_s": -1}',
            "for_s",
        ),
        (b"{not json", "malformed"),
    ],
)
def test_invalid_rules_are_refused_with_the_field_named(definition: bytes, expected: str) -> None:
    """Saving a bad rule fails with a message that points at the offending field."""
    with pytest.raises(ValueError, match="invalid rule") as caught:
        parse_rule(definition)
    assert expected in str(caught.value)
