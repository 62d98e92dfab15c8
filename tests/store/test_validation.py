"""``split_valid`` takes a clean batch whole by passes in C, and must refuse exactly what
the per-reading ``check_reading`` refuses, with the same reasons, whatever the batch."""

from __future__ import annotations

import enum

from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.core.types import Reading
from trellis.store.base import MAX_ABS_VALUE, MAX_TS, RejectedReading, check_reading, split_valid


class Level(enum.IntEnum):
    LOW = 1


class Celsius(float):
    pass


names = st.sampled_from(["acme", "pump-1", "t", "x" * 257, "", "nul\x00", "ünï 温度"])
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e201, max_value=1e201),
    st.sampled_from(
        [MAX_ABS_VALUE, -MAX_ABS_VALUE, 1e200 * 1.0000001, 0.0, -0.0, 5e-324, True, False]
    ),
    st.integers(),
    st.sampled_from([10**400, -(10**400), Level.LOW, Celsius(2.5), Celsius("nan"), "1", None]),
)
stamps = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=MAX_TS + 10),
    st.sampled_from([0, MAX_TS - 1, MAX_TS, -1, True, 1.0, Level.LOW, None, "0"]),
)
readings = st.builds(
    Reading,
    tenant=names,
    device=names,
    metric=names,
    ts=stamps,
    value=values,
    unit=st.one_of(st.none(), names),
)


def expected(batch: list[Reading]) -> tuple[list[Reading], list[RejectedReading]]:
    good, bad = [], []
    for index, reading in enumerate(batch):
        problem = check_reading(reading)
        if problem is None:
            good.append(reading)
        else:
            bad.append(RejectedReading(index, reading, problem))
    return good, bad


@settings(max_examples=500, deadline=None)
@given(st.lists(readings, max_size=20), st.booleans())
def test_split_valid_agrees_with_check_reading(batch: list[Reading], names_known: bool) -> None:
    """With every name already known good (so the whole-batch passes decide) or not."""
    names_ok: set[tuple[str, str, str, str | None]] = set()
    if names_known:
        for r in batch:
            ok = Reading(r.tenant, r.device, r.metric, 0, 0.0, r.unit)
            if check_reading(ok) is None:
                names_ok.add((r.tenant, r.device, r.metric, r.unit))
    assert split_valid(batch, names_ok) == expected(batch)
    assert split_valid(batch, names_ok) == expected(batch)  # with what the first call cached
    assert split_valid(batch) == expected(batch)


@given(
    st.lists(st.floats(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE), min_size=1, max_size=50),
    st.integers(min_value=0, max_value=49),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e201, True, 10**400]),
)
def test_one_bad_value_anywhere_in_a_clean_batch_is_refused(
    clean: list[float], at: int, bad: object
) -> None:
    """NaN, the infinities, an oversized number or a bool hidden among good values."""
    batch = [Reading("acme", "p", "t", 1_000 + i, v) for i, v in enumerate(clean)]
    at %= len(batch)
    batch[at] = Reading("acme", "p", "t", 1_000 + at, bad)  # type: ignore[arg-type]
    names_ok = {("acme", "p", "t", None)}
    good, rejected = split_valid(batch, names_ok)
    assert [r.index for r in rejected] == [at]
    assert len(good) == len(batch) - 1
