"""Rules that select points by Brick class, against the same rules written by metric.

Run ``python bench/semantic.py [--quick]``. Prints one JSON line per figure on stdout
(DESIGN.md, Benchmarks) and progress on stderr. The fleet is 10,000 pumps (2,000
with ``--quick``) in 20 buildings, each pump's ``temperature`` a point of class
``Motor_Temperature_Sensor`` in the semantic model.

* ``rule_readings_per_s_class_selector``: :meth:`RuleEngine.judge` with 100 threshold
  rules selecting ``Temperature_Sensor`` points (no metric named). Baseline: the same
  100 rules written with ``metric: temperature, model: pump``, same readings, same run.
* ``point_added_and_rules_reresolved_per_s``: a point added to the model (checked,
  written, snapshot rebuilt) and the engine's 100 point selectors re-resolved, per
  second: what placing one new device costs. Baseline: one bare Python pass over the
  same nodes picking the points of the class set (the least work any resolution does).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import Report
from trellis.alerts import AlertService
from trellis.bus import InProcessBus
from trellis.core.types import AlertSeverity, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.rules import AnyRule, RuleEngine, RuleStore, Selector, ThresholdRule
from trellis.semantic import Node, SemanticModel, brick_classes
from trellis.store.metadata import devices, open_metadata

BENCH = "semantic"
REPORT = Report(BENCH)
log = REPORT.log
emit = REPORT.emit
TENANT = "default"
RULES = 100
BATCH = 1_000
BUILDINGS = 20
T0 = 1_764_000_000_000


def rules(by_class: bool) -> list[AnyRule]:
    """100 threshold rules with hysteresis, by Brick class or by metric and model."""
    made: list[AnyRule] = []
    for i in range(RULES):
        common = {
            "id": f"t{i}",
            "op": ">",
            "threshold": 90.0 + i * 0.1,
            "clear_threshold": 85.0,
            "severity": AlertSeverity.MAJOR,
        }
        if by_class:
            made.append(ThresholdRule(**common, select=Selector(classes=["Temperature_Sensor"])))  # type: ignore[arg-type]
        else:
            made.append(ThresholdRule(**common, metric="temperature", model="pump"))  # type: ignore[arg-type]
    return made


def model_nodes(count: int) -> list[Node]:
    """A site, 20 buildings, ``count`` pumps spread over them, one point per pump."""
    nodes = [Node("campus", "Site")]
    nodes += [Node(f"bldg-{b}", "Building", parent="campus") for b in range(BUILDINGS)]
    for i in range(count):
        pump = f"pump-{i:05d}"
        nodes.append(Node(pump, "Pump", parent=f"bldg-{i % BUILDINGS}"))
        nodes.append(
            Node(
                f"{pump}.temperature",
                "Motor_Temperature_Sensor",
                parent=pump,
                device=pump,
                metric="temperature",
            )
        )
    return nodes


def engine_with(
    directory: Path, count: int, chosen: list[AnyRule]
) -> tuple[RuleEngine, SemanticModel]:
    """A real engine over a fresh metadata database with ``count`` pumps and their points."""
    engine = open_metadata(f"sqlite:///{directory / 'trellis.db'}")
    with engine.begin() as connection:
        connection.execute(
            devices.insert(),
            [
                {
                    "tenant": TENANT,
                    "id": f"pump-{i:05d}",
                    "model": "pump",
                    "site": "",
                    "attributes": {},
                    "created_ms": T0,
                }
                for i in range(count)
            ],
        )
    semantic = SemanticModel(engine)
    semantic.put(TENANT, model_nodes(count))
    store = RuleStore(engine)
    for rule in chosen:
        store.put(TENANT, rule)
    bus: InProcessBus[Reading] = InProcessBus(1)
    rule_engine = RuleEngine(
        bus.subscribe("rules"),
        store,
        AlertService(engine),
        DeviceRegistry(engine),
        semantic=semantic,
    )
    rule_engine.reload()
    semantic.listeners.append(rule_engine.invalidate)
    return rule_engine, semantic


def batches(count: int, readings: int) -> list[list[Reading]]:
    """Round-robin over the pumps, one second of event time per round; ~3 % hot."""
    out: list[Reading] = []
    for i in range(readings):
        device = i % count
        second = i // count
        value = 95.0 if (device * 7 + second) % 33 == 0 else 60.0 + (i % 200) / 10
        out.append(Reading(TENANT, f"pump-{device:05d}", "temperature", T0 + second * 1000, value))
    return [out[i : i + BATCH] for i in range(0, len(out), BATCH)]


def judge_all(engine: RuleEngine, work: list[list[Reading]]) -> float:
    """Seconds to judge every batch."""
    started = time.perf_counter()
    for batch in work:
        engine.judge(batch)
    return time.perf_counter() - started


def main() -> None:
    """Run every figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 60 s")
    args = parser.parse_args()
    count = 2_000 if args.quick else 10_000
    readings = 10_000 if args.quick else 50_000
    work = batches(count, readings)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metric").mkdir()
        (Path(tmp) / "class").mkdir()
        by_metric, _ = engine_with(Path(tmp) / "metric", count, rules(by_class=False))
        by_class, semantic = engine_with(Path(tmp) / "class", count, rules(by_class=True))
        metric_s = judge_all(by_metric, work)
        class_s = judge_all(by_class, work)
        log(
            f"by metric {readings * RULES / metric_s:,.0f}, "
            f"by class {readings * RULES / class_s:,.0f} rule-readings/s"
        )
        emit(
            "rule_readings_per_s_class_selector",
            readings * RULES / class_s,
            "rule-readings/s",
            "the same 100 threshold rules written by metric and model, same readings, same run",
            readings * RULES / metric_s,
            ">= 0.8 ratio",
            readings * RULES,
        )

        rounds = 5 if args.quick else 10
        started = time.perf_counter()
        for i in range(rounds):
            extra = f"extra-{i}"
            semantic.put(
                TENANT,
                [
                    Node(
                        f"{extra}.t",
                        "Zone_Air_Temperature_Sensor",
                        parent="bldg-0",
                        device=extra,
                        metric="temperature",
                    )
                ],
            )
            by_class.judge([])  # re-resolves before judging
        reindex_s = (time.perf_counter() - started) / rounds
        nodes = semantic.nodes(TENANT)
        wanted = brick_classes().descendants("Temperature_Sensor")
        started = time.perf_counter()
        for _ in range(rounds):
            frozenset((n.device, n.metric) for n in nodes if n.brick_class in wanted and n.device)
        bare_s = (time.perf_counter() - started) / rounds
        log(
            f"model change + re-resolve: {reindex_s * 1000:.1f} ms; "
            f"bare scan {bare_s * 1000:.2f} ms"
        )
        emit(
            "point_added_and_rules_reresolved_per_s",
            1 / reindex_s,
            "re-resolutions/s",
            "one bare Python pass over the same nodes picking the class's points",
            1 / bare_s,
            "",
            len(nodes),
        )


if __name__ == "__main__":
    main()
