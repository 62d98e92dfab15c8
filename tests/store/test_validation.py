"""``split_valid`` takes a clean batch whole by passes in C, and must refuse exactly what
the per-reading ``check_reading`` refuses, with the same reasons, whatever the batch."""

from __future__ import annotations

import enum
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from trellis.core.types import Reading
from trellis.store import SQLiteTimeSeriesStore
from trellis.store.base import MAX_ABS_VALUE, MAX_TS, RejectedReading, check_reading, split_valid


class Level(enum.IntEnum):
    LOW = 1


class Celsius(float):
    pass


names = st.sampled_from(
    ["acme", "pump-1", "t", "x" * 257, "", "nul\x00", "ünï 温度", ["a", "list"], 7, None]
)
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
            if check_reading(ok) is None:  # (only strings pass: hashable)
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


@pytest.mark.parametrize(
    "bad",
    [
        {"value": float("nan")},
        {"value": float("-inf")},
        {"value": True},
        {"value": 1e201},
        {"value": 10**400},
        {"value": "1.0"},
        {"ts": -1},
        {"ts": MAX_TS},
        {"ts": 1.5},
        {"device": ["p"]},
        {"unit": "nul\x00"},
    ],
)
def test_sqlite_store_refuses_a_bad_reading_after_its_series_are_known(
    tmp_path: Path, bad: dict[str, object]
) -> None:
    """The SQLite store takes a batch of known series and in-range numbers without
    split_valid; one bad reading in such a batch still goes the whole way round."""
    store = SQLiteTimeSeriesStore(tmp_path / "ts.db")
    try:
        batch = [Reading("acme", "p", f"m{i}", 1_000, float(i), "u") for i in range(5)]
        assert store.write(batch).inserted == 5  # the names are known from here on
        again = [replace(r, ts=2_000) for r in batch]
        again[2] = replace(again[2], **bad)  # type: ignore[arg-type]
        result = store.write(again)
        assert result.inserted == 4
        assert [(r.index, r.reason) for r in result.rejected] == [(2, check_reading(again[2]))]
        assert store.count() == 9
    finally:
        store.close()
