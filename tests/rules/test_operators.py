"""Each stream-rule operator on synthetic streams, with exact expected fire and clear times."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import TENANT
from tests.rules.streams import Judge, at, device_of, series, times
from trellis.core.types import Device
from trellis.rules import Selector, Sequence, StreamRule, compile_rule
from trellis.rules.runtime import aggregate


def rule(**fields: object) -> StreamRule:
    """A major temperature rule with the given fields."""
    defaults: dict[str, object] = {"id": "r", "metric": "temperature", "severity": "major"}
    return msgspec.convert(defaults | fields, StreamRule)


def test_plain_condition_raises_and_clears_on_the_reading_that_crosses() -> None:
    """Without temporal operators a CEL condition raises and clears at the crossing readings."""
    judge = Judge(rule(condition="value > 80.0"))
    assert times(judge.feed(series([70, 81, 85, 79, 90]))) == [
        ("raise", 1),
        ("clear", 3),
        ("raise", 4),
    ]


def test_for_duration_needs_the_whole_duration() -> None:
    """for_s=3 raises on the first reading 3 s after the condition began; a dip restarts it."""
    judge = Judge(rule(condition="value > 80.0", for_s=3))
    assert times(judge.feed(series([90, 90, 70, 90, 90, 90, 90, 90]))) == [("raise", 6)]


def test_hysteresis_clears_only_past_the_clear_expression() -> None:
    """Raise above 80, clear only below 75: 78 keeps the alert open."""
    judge = Judge(rule(condition="value > 80.0", clear="value < 75.0"))
    assert times(judge.feed(series([81, 78, 79, 76, 74, 78, 82]))) == [
        ("raise", 0),
        ("clear", 4),
        ("raise", 6),
    ]


def test_debounce_ignores_short_flaps_both_ways() -> None:
    """debounce_s=2: a one-second spike neither raises nor, once raised, clears."""
    judge = Judge(rule(condition="value > 80.0", debounce_s=2))
    values = [90, 70, 90, 90, 90, 70, 90, 70, 70, 70]
    assert times(judge.feed(series(values))) == [("raise", 4), ("clear", 9)]


def test_absence_fires_after_silence_and_clears_on_the_next_reading() -> None:
    """absence_s=300: raise at last reading + 300 s (on a tick), clear at the next reading."""
    judge = Judge(rule(absence_s=300))
    assert judge.feed([at(0, 1.0), at(10, 1.0)]) == []
    assert judge.tick(309) == []
    assert times(judge.tick(310)) == [("raise", 310)]
    assert judge.tick(400) == []  # no second raise while still silent
    assert times(judge.feed([at(500, 1.0)])) == [("clear", 500)]


def test_sequence_a_then_b_within_the_limit() -> None:
    """A (pressure drop) then B (temperature rise) within 10 s raises at B; too late does not."""
    definition = rule(condition="value < 10.0", sequence={"then": "value > 90.0", "within_s": 10})
    assert isinstance(definition.sequence, Sequence)
    judge = Judge(definition)
    in_time = [at(0, 5.0), at(4, 50.0), at(9, 95.0)]
    assert times(judge.feed(in_time)) == [("raise", 9)]
    assert times(judge.feed([at(12, 50.0)])) == [("clear", 12)]
    too_late = [at(20, 5.0), at(31, 95.0)]
    assert judge.feed(too_late) == []


def test_tumbling_window_is_judged_when_the_bucket_closes() -> None:
    """A 10 s tumbling avg is judged at each bucket end, once the next bucket begins."""
    judge = Judge(rule(condition="window.avg > 80.0", window={"kind": "tumbling", "size_s": 10}))
    values = [70.0] * 10 + [85.0] * 10 + [70.0] * 10 + [70.0]
    assert times(judge.feed(series(values))) == [("raise", 20), ("clear", 30)]


def test_sliding_window_max_and_count() -> None:
    """A 5 s sliding window forgets a spike exactly 5 s after it."""
    judge = Judge(
        rule(
            condition="window.max > 80.0 && window.count >= 3.0",
            window={"kind": "sliding", "size_s": 5},
        )
    )
    values = [50, 50, 90, 50, 50, 50, 50, 50, 50]
    assert times(judge.feed(series(values))) == [("raise", 2), ("clear", 7)]


def test_session_window_closes_after_the_gap() -> None:
    """A session (gaps < 30 s) is judged at last reading + gap: by a later reading or a tick."""
    judge = Judge(rule(condition="window.sum > 100.0", window={"kind": "session", "gap_s": 30}))
    burst = [at(0, 60.0), at(10, 60.0)]
    assert judge.feed(burst) == []
    assert times(judge.feed([at(100, 1.0)])) == [("raise", 40)]
    assert times(judge.tick(130)) == [("clear", 130)]


def test_rate_of_change_and_percentile_and_stddev() -> None:
    """rate is units per second over the window; p50 and stddev match hand computation."""
    points = [(0, 10.0), (1000, 12.0), (2000, 14.0), (3000, 16.0)]
    assert aggregate("rate", points) == pytest.approx(2.0)
    assert aggregate("p50", points) == pytest.approx(13.0)
    assert aggregate("stddev", points) == pytest.approx(math.sqrt(5.0))
    assert aggregate("count", []) == 0.0
    judge = Judge(rule(condition="window.rate > 1.5", window={"kind": "sliding", "size_s": 3}))
    assert times(judge.feed(series([10, 10, 10, 12, 14, 16, 16, 16, 16]))) == [
        ("raise", 4),
        ("clear", 6),
    ]


def test_out_of_order_within_lateness_is_judged_in_event_order() -> None:
    """With lateness_s=5, a shuffled stream gives the same transitions as the sorted one."""
    values = [70, 85, 86, 87, 70, 71, 90, 91, 92, 93, 60, 60, 60, 60, 60, 60, 60]
    ordered = series(values)
    shuffled = list(ordered)
    rng = random.Random(7)
    # swap neighbours at most 3 s apart: all within the 5 s allowance
    for i in range(0, len(shuffled) - 3, 4):
        j = i + rng.randint(1, 3)
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    definition = rule(condition="value > 80.0", for_s=2, lateness_s=5)
    expected = times(Judge(definition).feed(ordered))
    assert expected == [("raise", 3), ("clear", 4), ("raise", 8), ("clear", 10)]
    assert times(Judge(definition).feed(shuffled)) == expected


def test_late_data_beyond_the_allowance_is_dropped_and_counted() -> None:
    """A reading older than watermark - lateness is dropped, counted, and changes nothing."""
    judge = Judge(rule(condition="value > 80.0", lateness_s=2))
    assert times(judge.feed([at(0, 90.0), at(5, 90.0), at(10, 90.0)])) == [("raise", 0)]
    assert judge.feed([at(1, 10.0)]) == []  # 9 s behind the watermark
    assert judge.rule.late == 1
    assert times(judge.feed([at(11, 10.0), at(20, 10.0)])) == [("clear", 11)]


def test_duplicates_are_dropped() -> None:
    """A redelivered reading (same timestamp) is not judged twice, with or without lateness."""
    for lateness in (0, 3):
        judge = Judge(rule(condition="value > 80.0", lateness_s=lateness))
        signals = judge.feed([at(0, 90.0), at(0, 10.0), at(5, 90.0), at(9, 90.0)])
        assert times(signals) == [("raise", 0)]


def test_selectors_by_model_site_tag_and_attribute() -> None:
    """Only devices matching every selector field are judged."""
    select = Selector(
        models=["chiller"], sites=["plant-1"], tags=["critical"], attributes={"line": "a"}
    )
    compiled = compile_rule(rule(condition="value > 80.0", select=select))
    good = {"tags": ["critical"], "line": "a"}
    assert compiled.matches(Device(TENANT, "chiller-1", "chiller", site="plant-1", attributes=good))
    assert not compiled.matches(None)
    for wrong in (
        Device(TENANT, "pump-1", "pump", site="plant-1", attributes=good),
        Device(TENANT, "chiller-1", "chiller", site="plant-2", attributes=good),
        Device(TENANT, "chiller-1", "chiller", site="plant-1", attributes={"line": "a"}),
        Device(TENANT, "chiller-1", "chiller", site="plant-1", attributes=good | {"line": "b"}),
    ):
        assert not compiled.matches(wrong)


def test_conditions_see_device_attributes() -> None:
    """A condition can compare against a per-device setpoint attribute."""
    judge = Judge(
        rule(condition="value > attrs.setpoint + 2.0"),
        **{"chiller-1": device_of("chiller-1", setpoint=7.0)},
    )
    readings = series([8.0, 9.5, 8.5], device="chiller-1")
    assert times(judge.feed(readings)) == [("raise", 1), ("clear", 2)]


def test_rate_limit_turns_a_storm_into_a_reported_count() -> None:
    """10,000 devices tripping at once write only the rule's limit; the rest are counted."""
    compiled = compile_rule(rule(condition="value > 0.0", max_alerts_per_s=50))
    judge = Judge(compiled)
    readings = [at(0, 1.0, device=f"pump-{i}") for i in range(10_000)]
    signals = judge.feed(readings)
    assert len(signals) == 50
    assert compiled.suppressed == 10_000 - 50
    # suppressed series do not clear an alert that was never written
    clears = judge.feed([at(2, -1.0, device=f"pump-{i}") for i in range(10_000)])
    assert len(clears) == 50


@given(
    st.lists(st.floats(min_value=0, max_value=200, allow_nan=False), max_size=40),
    st.sampled_from(["tumbling", "sliding"]),
)
def test_window_transitions_alternate(values: list[float], kind: str) -> None:
    """Whatever the values, a windowed rule's transitions alternate raise, clear, raise…"""
    judge = Judge(rule(condition="window.avg > 100.0", window={"kind": kind, "size_s": 3}))
    kinds = [s.kind for s in judge.feed(series(values))]
    assert all(kind == ("raise" if i % 2 == 0 else "clear") for i, kind in enumerate(kinds))


def test_tumbling_buckets_hold_exactly_their_readings() -> None:
    """Each closed bucket's count is the readings inside it, including its first one."""
    judge = Judge(rule(condition="window.count == 10.0", window={"kind": "tumbling", "size_s": 10}))
    signals = judge.feed(series([1.0] * 31))
    assert times(signals) == [("raise", 10)]  # every bucket holds 10: raised once, never cleared


def test_where_filters_readings_before_the_window() -> None:
    """Readings failing `where` never enter the window: a sensor glitch (0.0) is ignored."""
    judge = Judge(
        rule(
            where="value > 0.0",
            condition="window.min < 50.0",
            window={"kind": "sliding", "size_s": 10},
        )
    )
    assert times(judge.feed(series([60, 0, 60, 0, 40, 60]))) == [("raise", 4)]


def test_transform_converts_before_the_condition() -> None:
    """A transform to °F is applied before the window; the condition reads °F."""
    judge = Judge(
        rule(
            transform="value * 1.8 + 32.0",
            condition="window.max > 212.0",
            window={"kind": "sliding", "size_s": 2},
        )
    )
    assert times(judge.feed(series([99.0, 101.0, 99.0, 99.0, 99.0]))) == [
        ("raise", 1),
        ("clear", 3),
    ]


def test_a_transform_must_give_a_double() -> None:
    """A transform yielding a bool or an int is refused on save."""
    with pytest.raises(ValueError, match="must give a double"):
        rule(condition="true", transform="value > 1.0")
    with pytest.raises(ValueError, match="must give a double"):
        rule(condition="true", transform="1")
