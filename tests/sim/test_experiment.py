"""A/B experiments: detectors, scoring against ground truth, the paired bootstrap,
bad experiment files, and the report end to end."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

from trellis.cli import app
from trellis.sim.detectors import (
    Detection,
    Detector,
    Readings,
    ThresholdDetector,
    ZScoreDetector,
)
from trellis.sim.experiment import ExperimentError, load_experiment, score
from trellis.sim.faults import FaultRecord
from trellis.sim.stats import paired_bootstrap

EXAMPLE = Path(__file__).parents[2] / "examples" / "experiments" / "threshold-vs-anomaly.toml"
H = 3_600_000


def _readings(values: np.ndarray) -> Readings:
    """Hourly readings of one metric for ``values.shape[1]`` assets."""
    steps, assets = values.shape
    return Readings(
        kind="pump",
        ts_ms=np.arange(steps, dtype=np.int64) * H,
        ids=[f"pump-{i + 1:04d}" for i in range(assets)],
        metrics=("vibration",),
        values=values[:, :, None],
    )


def test_threshold_detector_holds_for_its_duration_and_rearms() -> None:
    """Raised once the condition held for ``for_s``; cleared when it stops; raised again."""
    series = np.array([[1, 9, 9, 9, 1, 9, 9, 1.0]]).T
    detections = ThresholdDetector("vibration", 7.1, for_s=2 * 3600).detect(_readings(series))
    assert detections == [Detection("pump-0001", 2 * H), Detection("pump-0001", 6 * H)]


def test_a_dropped_sample_neither_raises_nor_clears_a_threshold() -> None:
    """NaN (a message that never arrived) carries the condition forward."""
    series = np.array([[9, math.nan, 9, 1.0]]).T
    detections = ThresholdDetector("vibration", 7.1, for_s=3 * 3600).detect(_readings(series))
    assert detections == [Detection("pump-0001", 2 * H)]


def test_zscore_detector_learns_each_assets_baseline_and_flags_a_departure() -> None:
    """A step of 10 sd on one asset is flagged; the other, noisier asset is not."""
    rng = np.random.default_rng(0)
    quiet = 2.0 + 0.1 * rng.standard_normal(48)
    noisy = 5.0 + 1.0 * rng.standard_normal(48)
    quiet[30:] += 1.0
    readings = _readings(np.column_stack((quiet, noisy)))
    detector = ZScoreDetector("vibration", z=6, fit_s=12 * 3600)
    assert isinstance(detector, Detector)
    assert detector.detect(readings) == [Detection("pump-0001", 30 * H)]


def test_scoring_against_ground_truth() -> None:
    """Lead time = failure − first alert in the fault window; alerts elsewhere are false."""
    readings = _readings(np.zeros((48, 3)))
    truth = [
        FaultRecord("pump-0001", "bearing_wear", 10 * H, 12 * H, 30 * H),
        FaultRecord("pump-0002", "bearing_wear", 20 * H, 22 * H, 40 * H),
    ]
    detections = [
        Detection("pump-0001", 5 * H),  # before onset: false
        Detection("pump-0001", 24 * H),  # lead 6 h
        Detection("pump-0003", 8 * H),  # no fault: false
        Detection("pump-0002", 44 * H),  # after failure: not false, not in time
    ]
    result = score(detections, truth, ["bearing_wear"], readings, seed=1)
    assert (result.alerts, result.false_alerts) == (4, 2)
    assert result.lead_times_h == [6.0]
    assert result.recall == 0.5
    assert math.isclose(result.false_per_asset_day, 2 / (3 * 47 / 24))


def test_paired_bootstrap_interval_covers_the_mean_difference_and_is_seeded() -> None:
    """The interval holds the mean difference, narrows with consistent pairs, repeats."""
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b = a + np.array([1.9, 2.1, 2.0, 1.8, 2.2, 2.0])
    interval = paired_bootstrap(b, a, 5000, seed=4)
    assert interval.low < 2.0 < interval.high
    assert interval.high - interval.low < 0.4
    assert interval == paired_bootstrap(b, a, 5000, seed=4)
    assert math.isnan(paired_bootstrap(np.array([math.nan]), np.array([1.0])).mean)


def _experiment(tmp_path: Path, text: str) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir(exist_ok=True)
    scenario = EXAMPLE.parents[1] / "scenarios" / "pump-bearings.toml"
    (scenarios / "s.toml").write_text(
        scenario.read_text().replace("duration_h = 72", "duration_h = 24")
    )
    path = tmp_path / "e.toml"
    path.write_text(text.replace("../scenarios/pump-bearings.toml", "scenarios/s.toml"))
    return path


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (
            ('asset = "pump"\ndetector = "zscore"', 'asset = "zone"\ndetector = "zscore"'),
            18,
            "variant B reads zone data but variant A reads pump data",
        ),
        (('metric = "vib_bearing"', 'metric = "rpm"'), 20, "a pump has no metric 'rpm'"),
        (('detector = "zscore"', 'detector = "oracle"'), 19, "unknown detector 'oracle'"),
        (
            ("seeds = [1, 2, 3, 4, 5, 6, 7, 8]", "seeds = [1]"),
            5,
            "seeds: List should have at least 2",
        ),
        (("z = 6", "z = -6"), 21, "variant.B.z: Input should be greater than 0"),
        (
            ('faults = ["bearing_wear"]', 'faults = ["gremlins"]'),
            6,
            "unknown fault kind 'gremlins'",
        ),
    ],
)
def test_bad_experiments_name_the_line(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    """Variants needing different inputs, unknown metric or detector…: file:line: why."""
    text = EXAMPLE.read_text()
    assert change[0] in text
    path = _experiment(tmp_path, text.replace(*change))
    with pytest.raises(ExperimentError, match=message) as caught:
        load_experiment(path)
    assert caught.value.line == line


def test_threshold_rule_vs_anomaly_detector_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "Done when" experiment end to end: lead time and false-alert figures with
    confidence intervals, as JSON and as a self-contained HTML page with charts."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path / "data"))
    text = EXAMPLE.read_text().replace("seeds = [1, 2, 3, 4, 5, 6, 7, 8]", "seeds = [1, 2, 3]")
    path = tmp_path / "e.toml"
    path.write_text(text.replace("../scenarios/", f"{EXAMPLE.parents[1]}/scenarios/"))
    html, json = tmp_path / "report.html", tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["experiment", "run", str(path), "--html", str(html), "--json", str(json)]
    )
    assert result.exit_code == 0, result.output
    report = msgspec.json.decode(json.read_bytes())
    figures = {c["figure"]: c for c in report["comparisons"]}
    lead, false = figures["median lead time"], figures["false alerts per asset-day"]
    assert lead["difference"]["n"] == 3
    assert lead["difference"]["low"] <= lead["difference"]["mean"] <= lead["difference"]["high"]
    assert report["b"]["lead_median_h"] > report["a"]["lead_median_h"] > 0
    assert report["a"]["recall"]["bearing_wear"] > 0
    assert false["a_mean"]["n"] == 3
    page = html.read_text()
    assert "median lead time" in page
    assert "echarts.init" in page
    assert "<script src=" not in page  # self-contained
    assert len(list((tmp_path / "data" / "experiments").glob("*.json"))) == 1


def test_a_bad_experiment_exits_2_with_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI prints file:line: why and exits 2."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path / "data"))
    path = _experiment(tmp_path, EXAMPLE.read_text().replace("z = 6", "z = 0"))
    result = CliRunner().invoke(app, ["experiment", "run", str(path)])
    assert result.exit_code == 2
    assert "e.toml:21: variant.B.z" in result.output
