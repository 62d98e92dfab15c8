"""A/B experiments on a simulated fleet: two detectors, one scenario, many seeds.

An experiment file (TOML) names a scenario, the seeds and the two variants::

    scenario = "../scenarios/pump-bearings.toml"   # relative to this file
    seeds = [1, 2, 3, 4, 5, 6, 7, 8]
    faults = ["bearing_wear"]                      # fault types scored (default: all)

    [variant.A]
    name = "vibration > 7.1 mm/s for 15 min"
    asset = "pump"
    detector = "threshold"
    metric = "vibration"
    above = 7.1
    for_s = 900

    [variant.B]
    name = "EWMA z-score on the bearing band"
    asset = "pump"
    detector = "zscore"
    metric = "vib_bearing"
    z = 6

For every seed both variants read the *same* simulated readings; each is scored
against the ground truth, and the per-seed differences (B − A) are compared with a
paired bootstrap confidence interval.

Scoring, per seed and variant: a fault (of a scored type) is *detected* when an alert
lands on its asset between its onset and its failure (or the end of the run when it
never fails); its *lead time* is failure − first such alert. An alert on an asset with
no fault in progress is *false*. Precision of a fault type = alerts on faults of that
type / (those + every false alert); false alerts are normalised per asset-day.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from trellis.sim.detectors import Detection, Detector, Readings, ThresholdDetector, ZScoreDetector
from trellis.sim.engine import ASSET_KINDS, Plan, Simulation
from trellis.sim.faults import FAULTS, FaultRecord
from trellis.sim.scenario import ScenarioError, line_of, load_scenario
from trellis.sim.stats import Interval, paired_bootstrap

__all__ = [
    "Experiment",
    "ExperimentError",
    "ExperimentReport",
    "SeedScore",
    "load_experiment",
    "run_experiment",
    "score",
]

ExperimentError = ScenarioError  # same shape: "file:line: why"


class _Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    asset: str = "pump"
    detector: str
    metric: str
    above: float | None = None
    for_s: float = Field(default=0.0, ge=0)
    z: float = Field(default=6.0, gt=0)
    halflife_s: float = Field(default=7 * 86_400.0, gt=0)
    fit_s: float = Field(default=6 * 3600.0, gt=0)


class _Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "experiment"
    scenario: str
    seeds: list[int] = Field(min_length=2)
    faults: list[str] | None = None
    variant: dict[str, _Variant]
    bootstrap: int = Field(default=10_000, ge=100)


class Variant(msgspec.Struct, frozen=True):
    """One side: a label, the asset kind it reads and its detector."""

    label: str
    name: str
    asset: str
    detector: Any  # a Detector; msgspec cannot type a Protocol


class Experiment(msgspec.Struct, frozen=True):
    """A validated experiment, ready to run."""

    name: str
    source: str
    scenario: str
    plan: Plan
    seeds: list[int]
    faults: list[str]
    a: Variant
    b: Variant
    bootstrap: int = 10_000


def _detector(variant: _Variant) -> Detector:
    if variant.detector == "threshold":
        if variant.above is None:
            raise ValueError("a threshold detector needs 'above'")
        return ThresholdDetector(variant.metric, variant.above, variant.for_s)
    if variant.detector == "zscore":
        return ZScoreDetector(
            variant.metric, variant.z, variant.halflife_s, variant.for_s, variant.fit_s
        )
    raise ValueError(f"unknown detector {variant.detector!r} (known: threshold, zscore)")


def load_experiment(path: Path) -> Experiment:
    """The experiment in ``path``; every problem is an :class:`ExperimentError` with its line."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw: dict[str, Any] = tomllib.loads(text)
    except OSError as exc:
        raise ExperimentError(source, 0, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(source, 1, str(exc)) from None
    try:
        spec = _Experiment.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        where = ".".join(str(part) for part in loc)
        line = line_of(
            text, (f"variant.{loc[1]}", *loc[2:]) if loc[0] == "variant" and len(loc) > 1 else loc
        )
        raise ExperimentError(source, line, f"{where}: {error['msg']}") from None
    if sorted(spec.variant) != ["A", "B"]:
        raise ExperimentError(
            source, line_of(text, ("variant",)), "define exactly [variant.A] and [variant.B]"
        )
    plan = load_scenario(path.parent / spec.scenario)
    for label in ("A", "B"):
        if spec.variant[label].asset not in ASSET_KINDS:
            raise ExperimentError(
                source,
                line_of(text, (f"variant.{label}", "asset")),
                f"unknown asset kind {spec.variant[label].asset!r} "
                f"(known: {', '.join(ASSET_KINDS)})",
            )
    if spec.variant["A"].asset != spec.variant["B"].asset:
        raise ExperimentError(
            source,
            line_of(text, ("variant.B", "asset")),
            f"variant B reads {spec.variant['B'].asset} data but variant A reads "
            f"{spec.variant['A'].asset} data: the two sides of an experiment must run "
            "on the same input",
        )
    variants: list[Variant] = []
    for label in ("A", "B"):
        variant = spec.variant[label]
        table = f"variant.{label}"
        metrics = ASSET_KINDS[variant.asset][0].metrics
        if variant.metric not in metrics:
            raise ExperimentError(
                source,
                line_of(text, (table, "metric")),
                f"a {variant.asset} has no metric {variant.metric!r} (has: {', '.join(metrics)})",
            )
        try:
            detector = _detector(variant)
        except ValueError as exc:
            raise ExperimentError(source, line_of(text, (table, "detector")), str(exc)) from None
        variants.append(Variant(label, variant.name or label, variant.asset, detector))
    a, b = variants
    kinds = spec.faults or [k for k, f in FAULTS.items() if f.asset in (a.asset, "device")]
    for name in kinds:
        if name not in FAULTS:
            raise ExperimentError(
                source, line_of(text, ("faults",)), f"unknown fault kind {name!r}"
            )
    return Experiment(
        spec.name,
        source,
        str(path.parent / spec.scenario),
        plan,
        spec.seeds,
        kinds,
        a,
        b,
        spec.bootstrap,
    )


def readings_of(plan: Plan, kind: str) -> tuple[Readings, list[FaultRecord]]:
    """Run ``plan`` and gather the series of asset ``kind`` on the tick clock."""
    sim = Simulation(plan)
    bank = next((b for b in sim.banks if b.kind == kind), None)
    if bank is None:
        raise ValueError(f"the scenario has no {kind} assets")
    values = np.full((plan.ticks, bank.n, len(bank.metrics)), np.nan)
    ts = np.empty(plan.ticks, dtype=np.int64)
    for t, (ts_ms, frames) in enumerate(sim):
        ts[t] = ts_ms
        for frame in frames:
            if frame.kind == kind:
                values[t, frame.rows] = frame.values  # duplicates: the last copy wins
    readings = Readings(kind, ts, list(bank.ids), bank.metrics, values)
    return readings, sim.truth


class FaultScore(msgspec.Struct, frozen=True):
    """How one variant did on one fault type in one seed."""

    kind: str
    faults: int
    detected: int
    alerts: int
    lead_times_h: list[float]

    @property
    def recall(self) -> float:
        return self.detected / self.faults if self.faults else math.nan


class SeedScore(msgspec.Struct, frozen=True):
    """One variant's figures for one seed."""

    seed: int
    alerts: int
    false_alerts: int
    false_per_asset_day: float
    lead_times_h: list[float]
    per_fault: list[FaultScore]

    @property
    def median_lead_h(self) -> float:
        return float(np.median(self.lead_times_h)) if self.lead_times_h else math.nan

    @property
    def recall(self) -> float:
        faults = sum(f.faults for f in self.per_fault)
        return sum(f.detected for f in self.per_fault) / faults if faults else math.nan


def score(
    detections: list[Detection],
    truth: list[FaultRecord],
    kinds: list[str],
    readings: Readings,
    seed: int,
) -> SeedScore:
    """Score alerts against the ground truth (see the module docstring)."""
    end_ms = int(readings.ts_ms[-1])
    windows: dict[str, list[tuple[int, int, FaultRecord]]] = {}
    for record in truth:
        stop = record.failure_ms if record.failure_ms is not None else end_ms
        windows.setdefault(record.asset, []).append((record.onset_ms, max(stop, end_ms), record))
    false_alerts = 0
    first: dict[int, int] = {}
    hits: dict[str, int] = dict.fromkeys(kinds, 0)
    for detection in detections:
        matched = [
            record
            for start, stop, record in windows.get(detection.asset, [])
            if start <= detection.ts_ms <= stop
        ]
        if not matched:
            false_alerts += 1
            continue
        for record in matched:
            if record.kind in hits:
                hits[record.kind] += 1
            key = id(record)
            first[key] = min(first.get(key, detection.ts_ms), detection.ts_ms)
    per_fault: list[FaultScore] = []
    all_leads: list[float] = []
    for kind in kinds:
        records = [r for r in truth if r.kind == kind and r.asset in readings.ids]
        leads: list[float] = []
        detected = 0
        for record in records:
            when = first.get(id(record))
            deadline = record.failure_ms if record.failure_ms is not None else end_ms
            if when is None or when > deadline:
                continue
            detected += 1
            if record.failure_ms is not None:
                leads.append((record.failure_ms - when) / 3_600_000)
        all_leads.extend(leads)
        per_fault.append(FaultScore(kind, len(records), detected, hits[kind], leads))
    days = (end_ms - int(readings.ts_ms[0])) / 86_400_000 or 1.0
    return SeedScore(
        seed=seed,
        alerts=len(detections),
        false_alerts=false_alerts,
        false_per_asset_day=false_alerts / (len(readings.ids) * days),
        lead_times_h=all_leads,
        per_fault=per_fault,
    )


class Comparison(msgspec.Struct, frozen=True):
    """A figure for A and B over the seeds, and the paired difference B − A."""

    figure: str
    unit: str
    better: str  # "higher" or "lower"
    a: list[float]
    b: list[float]
    a_mean: Interval
    b_mean: Interval
    difference: Interval


class VariantSummary(msgspec.Struct, frozen=True):
    """Pooled over seeds: lead time quantiles, precision/recall per fault type."""

    label: str
    name: str
    lead_median_h: float
    lead_p10_h: float
    alerts: int
    false_alerts: int
    false_per_asset_day: float
    precision: dict[str, float]
    recall: dict[str, float]
    seeds: list[SeedScore]


class ExperimentReport(msgspec.Struct, frozen=True):
    """Everything the report page shows, as data (JSON export)."""

    name: str
    scenario: str
    asset: str
    assets: int
    days: float
    seeds: list[int]
    faults: list[str]
    a: VariantSummary
    b: VariantSummary
    comparisons: list[Comparison]
    notes: list[str]


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) if values else math.nan


def _summary(
    variant: Variant, scores: list[SeedScore], kinds: list[str], assets: int, days: float
) -> VariantSummary:
    leads = [lead for s in scores for lead in s.lead_times_h]
    false_alerts = sum(s.false_alerts for s in scores)
    precision: dict[str, float] = {}
    recall: dict[str, float] = {}
    for kind in kinds:
        hits = sum(f.alerts for s in scores for f in s.per_fault if f.kind == kind)
        faults = sum(f.faults for s in scores for f in s.per_fault if f.kind == kind)
        detected = sum(f.detected for s in scores for f in s.per_fault if f.kind == kind)
        if faults:
            precision[kind] = hits / (hits + false_alerts) if hits + false_alerts else math.nan
            recall[kind] = detected / faults
    return VariantSummary(
        label=variant.label,
        name=variant.name,
        lead_median_h=_quantile(leads, 0.5),
        lead_p10_h=_quantile(leads, 0.1),
        alerts=sum(s.alerts for s in scores),
        false_alerts=false_alerts,
        false_per_asset_day=false_alerts / (assets * days * len(scores)),
        precision=precision,
        recall=recall,
        seeds=scores,
    )


def _compare(
    figure: str, unit: str, better: str, a: list[float], b: list[float], resamples: int
) -> Comparison:
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return Comparison(
        figure=figure,
        unit=unit,
        better=better,
        a=a,
        b=b,
        a_mean=paired_bootstrap(a_arr, np.zeros_like(a_arr), resamples, seed=1),
        b_mean=paired_bootstrap(b_arr, np.zeros_like(b_arr), resamples, seed=2),
        difference=paired_bootstrap(b_arr, a_arr, resamples, seed=3),
    )


def run_experiment(experiment: Experiment, progress: Any = None) -> ExperimentReport:
    """Run both variants on every seed and compare them. ``progress(done, total)``
    is called after each seed when given."""
    a_scores: list[SeedScore] = []
    b_scores: list[SeedScore] = []
    readings: Readings | None = None
    for done, seed in enumerate(experiment.seeds, start=1):
        plan = msgspec.structs.replace(experiment.plan, seed=seed)
        readings, truth = readings_of(plan, experiment.a.asset)
        for variant, scores in ((experiment.a, a_scores), (experiment.b, b_scores)):
            detections = variant.detector.detect(readings)
            scores.append(score(detections, truth, experiment.faults, readings, seed))
        if progress is not None:
            progress(done, len(experiment.seeds))
    assert readings is not None
    assets = len(readings.ids)
    days = (int(readings.ts_ms[-1]) - int(readings.ts_ms[0])) / 86_400_000
    n = experiment.bootstrap
    comparisons = [
        _compare(
            "median lead time",
            "h",
            "higher",
            [s.median_lead_h for s in a_scores],
            [s.median_lead_h for s in b_scores],
            n,
        ),
        _compare(
            "false alerts per asset-day",
            "1/asset-day",
            "lower",
            [s.false_per_asset_day for s in a_scores],
            [s.false_per_asset_day for s in b_scores],
            n,
        ),
        _compare(
            "recall", "", "higher", [s.recall for s in a_scores], [s.recall for s in b_scores], n
        ),
        _compare(
            "alerts to handle",
            "alerts",
            "lower",
            [float(s.alerts) for s in a_scores],
            [float(s.alerts) for s in b_scores],
            n,
        ),
    ]
    return ExperimentReport(
        name=experiment.name,
        scenario=experiment.scenario,
        asset=experiment.a.asset,
        assets=assets,
        days=days,
        seeds=experiment.seeds,
        faults=experiment.faults,
        a=_summary(experiment.a, a_scores, experiment.faults, assets, days),
        b=_summary(experiment.b, b_scores, experiment.faults, assets, days),
        comparisons=comparisons,
        notes=[
            "Intervals are 95 % paired bootstrap intervals over seeds (percentile method).",
            "Seeds where a variant detected nothing have no lead time and are left out "
            "of that figure's comparison.",
            "Inference energy is not measured yet.",
        ],
    )
