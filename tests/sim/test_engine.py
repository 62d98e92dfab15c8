"""The simulation engine: determinism, misbehaving devices, ground truth, files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from trellis.sim.engine import DeviceFaults, FaultPlan, Plan, Simulation, SitePlan
from trellis.sim.faults import FAULTS, FaultRecord
from trellis.sim.outputs import open_sink

MONDAY = 1_736_121_600_000


def _plan(seed: int = 7, **changes: object) -> Plan:
    base = Plan(
        sites=[
            SitePlan("north", {"pump": 4, "zone": 3, "chiller": 1, "meter": 1}, 60.0),
            SitePlan("south", {"pump": 2, "zone": 2, "meter": 1}, 300.0),
        ],
        start_ms=MONDAY,
        duration_s=4 * 3600,
        step_s=60.0,
        seed=seed,
        devices=DeviceFaults(drop_rate=0.02, duplicate_rate=0.01),
        faults=[
            FaultPlan("pump-0002", "bearing_wear", onset_s=3600, growth_s=1800),
            FaultPlan("zone-0001", "stuck_sensor", onset_s=600),
            FaultPlan("zone-0004", "clock_skew", onset_s=0, offset_s=90),
        ],
    )
    return Plan(**{**{f: getattr(base, f) for f in base.__struct_fields__}, **changes})


def _write(plan: Plan, path: Path) -> str:
    with open_sink(path) as sink:
        for _, frames in Simulation(plan):
            sink.write(frames)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    """Two runs of one plan and seed write identical files; another seed differs."""
    first = _write(_plan(), tmp_path / "a.csv")
    again = _write(_plan(), tmp_path / "b.csv")
    other = _write(_plan(seed=8), tmp_path / "c.csv")
    assert first == again != other


def test_parquet_holds_the_same_readings_as_csv(tmp_path: Path) -> None:
    """The Parquet file has one row per reading, like the CSV."""
    _write(_plan(), tmp_path / "a.csv")
    _write(_plan(), tmp_path / "a.parquet")
    csv_rows = len((tmp_path / "a.csv").read_text().splitlines()) - 1
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.num_rows == csv_rows
    assert table.column_names == ["ts", "device", "model", "metric", "value", "seq"]


def test_unknown_file_suffix_is_refused(tmp_path: Path) -> None:
    """Only .csv and .parquet are written; anything else names the path."""
    with pytest.raises(ValueError, match=r"x\.json: write \.csv or \.parquet"):
        open_sink(tmp_path / "x.json")


def test_devices_report_at_their_site_rate_drop_and_duplicate() -> None:
    """North reports every minute, south every five; drops leave seq gaps, bursts repeat."""
    sent: dict[str, list[int]] = {}
    for _, frames in Simulation(_plan()):
        for frame in frames:
            for row, seq in zip(frame.rows.tolist(), frame.seq.tolist(), strict=True):
                sent.setdefault(frame.ids[row], []).append(seq)
    ticks = _plan().ticks
    north, south = sent["pump-0001"], sent["pump-0005"]
    assert max(north) == ticks
    assert max(south) == ticks // 5
    every = [seq for seqs in sent.values() for seq in seqs]
    distinct = {(device, seq) for device, seqs in sent.items() for seq in seqs}
    assert len(every) > len(distinct)  # duplicates
    expected = sum(max(seqs) for seqs in sent.values())
    assert len(distinct) < expected  # drops


def test_stuck_sensor_repeats_and_clock_skew_runs_ahead() -> None:
    """A stuck device repeats its values exactly; a skewed one stamps 90 s ahead."""
    plan = _plan(devices=DeviceFaults())
    stuck: list[list[float]] = []
    skew: list[int] = []
    for ts_ms, frames in Simulation(plan):
        zones = next(f for f in frames if f.kind == "zone")
        for row, ts, values in zip(zones.rows, zones.ts_ms, zones.values, strict=True):
            if zones.ids[row] == "zone-0001" and ts_ms > MONDAY + 600_000:
                stuck.append(values.tolist())
            if zones.ids[row] == "zone-0004":
                skew.append(int(ts) - ts_ms)
    assert len(stuck) > 10
    assert all(values == stuck[0] for values in stuck)
    assert set(skew) == {90_000}


def test_ground_truth_records_every_fault_in_closed_form() -> None:
    """Onset, observable start and failure come from the growth law, exactly."""
    sim = Simulation(_plan())
    bearing = sim.truth[0]
    kind = FAULTS["bearing_wear"]
    onset = MONDAY + 3_600_000
    assert bearing == FaultRecord(
        asset="pump-0002",
        kind="bearing_wear",
        onset_ms=onset,
        observable_ms=onset + round(1800 * np.log1p(kind.observable / kind.scale) * 1000),
        failure_ms=onset + round(1800 * np.log1p(11.0 / kind.scale) * 1000),
    )
    assert [r.kind for r in sim.truth] == ["bearing_wear", "stuck_sensor", "clock_skew"]
    assert sim.truth[1].failure_ms is None


def test_the_bearing_band_crosses_the_failure_level_at_the_recorded_failure_time() -> None:
    """The simulated symptom agrees with the ground truth's failure instant."""
    plan = _plan(devices=DeviceFaults(), duration_s=8 * 3600)
    sim = Simulation(plan)
    failure = sim.truth[0].failure_ms
    assert failure is not None
    crossed = None
    for ts_ms, frames in sim:
        pumps = next(f for f in frames if f.kind == "pump")
        band = pumps.values[list(pumps.rows).index(1), 6]
        if crossed is None and band - 0.3 >= 11.0 * 1.1:
            crossed = ts_ms
    assert crossed is not None
    assert abs(crossed - failure) < 15 * 60_000


def test_a_fault_on_a_missing_asset_or_of_the_wrong_kind_is_refused() -> None:
    """A fault names an asset of the fleet and fits its kind."""
    with pytest.raises(ValueError, match="no simulated asset 'pump-0099'"):
        Simulation(_plan(faults=[FaultPlan("pump-0099", "bearing_wear", 0)]))
    with pytest.raises(ValueError, match="stuck_damper is a zone fault; pump-0001 is a pump"):
        Simulation(_plan(faults=[FaultPlan("pump-0001", "stuck_damper", 0)]))
