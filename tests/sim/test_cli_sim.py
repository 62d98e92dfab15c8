"""``trellis sim --scenario``: files with ground truth, and bad scenarios."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import msgspec
from typer.testing import CliRunner

from trellis.cli import app
from trellis.sim.faults import FaultRecord

runner = CliRunner()

SCENARIO = """\
seed = 4
start = "2025-01-06T06:00:00Z"
duration_h = 0.5
step_s = 60

[[site]]
name = "plant-1"
pumps = 2
zones = 1
chillers = 1
meters = 1
rate_hz = 0.016666666666666666

[[fault]]
asset = "pump-0002"
kind = "bearing_wear"
onset_h = 0.1
growth_h = 0.05
"""


def test_a_scenario_to_csv_writes_readings_and_ground_truth(tmp_path: Path) -> None:
    """Every reading of every device and tick is a row; the truth file holds the fault."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run.csv"
    result = runner.invoke(app, ["sim", "--scenario", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open() as file:
        rows = list(csv.DictReader(file))
    per_tick = 2 * 8 + 1 * 3 + 1 * 4 + 1 * 2
    assert len(rows) == 30 * per_tick
    assert {row["model"] for row in rows} == {"pump", "room", "chiller", "meter"}
    truth = msgspec.json.decode((tmp_path / "run.truth.json").read_bytes(), type=list[FaultRecord])
    assert [(t.asset, t.kind) for t in truth] == [("pump-0002", "bearing_wear")]


def test_a_bad_scenario_exits_2_naming_the_line(tmp_path: Path) -> None:
    """The CLI reports the scenario's file and line and writes nothing."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("pumps = 2", "pumps = -2"))
    out = tmp_path / "run.csv"
    result = runner.invoke(app, ["sim", "--scenario", str(scenario), "--out", str(out)])
    assert result.exit_code == 2
    assert "s.toml:8: site.0.pumps: Input should be greater than or equal to 0" in result.output
    assert not out.exists()


def test_speed_paces_the_simulated_clock(tmp_path: Path) -> None:
    """``--speed 600``: three one-minute steps take at least 0.2 s of wall time
    (the first tick goes at once); JSON lines carry one message per device and tick."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("duration_h = 0.5", "duration_h = 0.05"))
    out = tmp_path / "run.jsonl"
    began = time.monotonic()
    result = runner.invoke(
        app, ["sim", "--scenario", str(scenario), "--out", str(out), "--speed", "600"]
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began >= 0.2
    assert len(out.read_bytes().splitlines()) == 3 * 5
