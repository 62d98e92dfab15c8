"""Rule engine throughput: readings judged by 100 rules over 10,000 devices, on one core.

Run ``python bench/rules.py [--quick]``. Prints one JSON line per figure on stdout
(DESIGN.md, Benchmarks) and progress on stderr. Every figure runs the real
:meth:`RuleEngine.judge` (registry lookup, selector, per-device state, compiled
rule) over pre-built batches of 1,000 readings from 10,000 pumps; alert writes are
not included (``bench/alerts.py`` measures those).

* ``rule_readings_per_s_threshold``: 100 threshold rules with hysteresis.
  Baseline: a bare Python loop doing the same 100 comparisons per reading.
* ``rule_readings_per_s_windowed``: 100 CEL rules on a 60 s sliding window
  (``window.avg``). Baseline: the same bare comparison loop.
* ``rule_readings_per_s_for_duration``: 100 CEL rules with ``for_s``.
* ``checkpoint_states_per_s``: rule states written by :meth:`RuleEngine.checkpoint`
  after the windowed run. Baseline: ``executemany`` of the same blobs into a plain
  SQLite table in the same database.
* ``readings_per_s_mix``: readings/s through 100 rules (40 threshold, 30 windowed,
  30 for-duration). Baseline: the same readings through the engine with no rules.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from _common import Report
from trellis.alerts import AlertService
from trellis.bus import InProcessBus
from trellis.core.types import AlertSeverity, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.rules import AnyRule, RuleEngine, RuleStore, StreamRule, ThresholdRule
from trellis.store.metadata import devices, open_metadata

BENCH = "rules"
REPORT = Report(BENCH)
log = REPORT.log
emit = REPORT.emit
TENANT = "default"
DEVICES = 10_000
RULES = 100
BATCH = 1_000
T0 = 1_764_000_000_000


def threshold_rules(count: int, offset: int = 0) -> list[AnyRule]:
    """Threshold rules at different levels, with hysteresis."""
    return [
        ThresholdRule(
            id=f"t{offset + i}",
            metric="temperature",
            op=">",
            threshold=90.0 + i * 0.1,
            clear_threshold=85.0,
            severity=AlertSeverity.MAJOR,
            model="pump",
        )
        for i in range(count)
    ]


def windowed_rules(count: int, offset: int = 0) -> list[AnyRule]:
    """CEL rules on a 60 s sliding average."""
    return [
        msgspec.convert(
            {
                "id": f"w{offset + i}",
                "metric": "temperature",
                "severity": "minor",
                "select": {"models": ["pump"]},
                "window": {"kind": "sliding", "size_s": 60},
                "condition": f"window.avg > {90.0 + i * 0.1}",
            },
            StreamRule,
        )
        for i in range(count)
    ]


def for_duration_rules(count: int, offset: int = 0) -> list[AnyRule]:
    """CEL rules that must hold 30 s."""
    return [
        msgspec.convert(
            {
                "id": f"f{offset + i}",
                "metric": "temperature",
                "severity": "warning",
                "select": {"models": ["pump"]},
                "condition": f"value > {90.0 + i * 0.1}",
                "for_s": 30,
            },
            StreamRule,
        )
        for i in range(count)
    ]


def batches(readings: int) -> list[list[Reading]]:
    """Round-robin over the devices, one second of event time per round; ~3 % hot."""
    out: list[Reading] = []
    for i in range(readings):
        device = i % DEVICES
        second = i // DEVICES
        value = 95.0 if (device * 7 + second) % 33 == 0 else 60.0 + (i % 200) / 10
        out.append(Reading(TENANT, f"pump-{device:05d}", "temperature", T0 + second * 1000, value))
    return [out[i : i + BATCH] for i in range(0, len(out), BATCH)]


def engine_with(directory: Path, rules: Sequence[AnyRule]) -> RuleEngine:
    """A real engine over a fresh metadata database with 10,000 pumps and ``rules``."""
    engine = open_metadata(f"sqlite:///{directory / 'trellis.db'}")
    with engine.begin() as connection:
        connection.execute(
            devices.insert(),
            [
                {
                    "tenant": TENANT,
                    "id": f"pump-{i:05d}",
                    "model": "pump",
                    "site": f"site-{i % 20}",
                    "attributes": {},
                    "created_ms": T0,
                }
                for i in range(DEVICES)
            ],
        )
    store = RuleStore(engine)
    for rule in rules:
        store.put(TENANT, rule)
    bus: InProcessBus[Reading] = InProcessBus(1)
    rule_engine = RuleEngine(
        bus.subscribe("rules"), store, AlertService(engine), DeviceRegistry(engine)
    )
    rule_engine.reload()
    return rule_engine


def judge_all(engine: RuleEngine, work: list[list[Reading]]) -> float:
    """Seconds to judge every batch."""
    started = time.perf_counter()
    for batch in work:
        engine.judge(batch)
    return time.perf_counter() - started


def bare_loop(work: list[list[Reading]], thresholds: list[float]) -> float:
    """Seconds for the same readings through a plain comparison per rule: the raw limit."""
    started = time.perf_counter()
    hits = 0
    for batch in work:
        for reading in batch:
            value = reading.value
            for threshold in thresholds:
                if value > threshold:
                    hits += 1
    return time.perf_counter() - started


def bench_checkpoint(engine: RuleEngine, directory: Path) -> None:
    """Time one checkpoint of every state the run left, beside a bare executemany."""
    started = time.perf_counter()
    written = engine.checkpoint()
    seconds = time.perf_counter() - started
    blobs = [(str(i), b"x" * 64) for i in range(written)]
    connection = sqlite3.connect(directory / "bare.db")
    connection.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    started = time.perf_counter()
    with connection:
        connection.executemany("INSERT INTO t VALUES (?, ?)", blobs)
    bare = time.perf_counter() - started
    connection.close()
    log(f"checkpoint: {written:,} states in {seconds:.2f} s")
    emit(
        "checkpoint_states_per_s",
        written / seconds,
        "states/s",
        "sqlite3 executemany of as many 64-byte blobs into a plain table",
        written / bare,
        "",
        written,
    )


def main() -> None:
    """Run every figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 60 s")
    args = parser.parse_args()
    readings = 20_000 if args.quick else 100_000
    work = batches(readings)
    thresholds = [90.0 + i * 0.1 for i in range(RULES)]
    bare_s = bare_loop(work, thresholds)
    bare_rate = readings * RULES / bare_s
    log(f"bare loop: {bare_rate:,.0f} comparisons/s")
    cases: list[tuple[str, list[AnyRule], int, str]] = [
        ("rule_readings_per_s_threshold", threshold_rules(RULES), readings, ">= 200000"),
        ("rule_readings_per_s_windowed", windowed_rules(RULES), readings // 4, ">= 50000"),
        ("rule_readings_per_s_for_duration", for_duration_rules(RULES), readings // 4, ""),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for index, (figure, rules, n, target) in enumerate(cases):
            directory = Path(tmp) / str(index)
            directory.mkdir()
            engine = engine_with(directory, rules)
            seconds = judge_all(engine, work[: n // BATCH])
            rate = n * RULES / seconds
            log(f"{figure}: {rate:,.0f} rule-readings/s")
            if figure == "rule_readings_per_s_windowed":
                bench_checkpoint(engine, directory)
            emit(
                figure,
                rate,
                "rule-readings/s",
                "bare Python loop, one comparison per rule per reading, same readings",
                bare_rate,
                target,
                n * RULES,
            )
        mix = threshold_rules(40) + windowed_rules(30, 40) + for_duration_rules(30, 70)
        (Path(tmp) / "mix").mkdir()
        (Path(tmp) / "none").mkdir()
        mixed = engine_with(Path(tmp) / "mix", mix)
        empty = engine_with(Path(tmp) / "none", [])
        n = readings // 4
        mixed_s = judge_all(mixed, work[: n // BATCH])
        empty_s = judge_all(empty, work[: n // BATCH])
        log(f"mix: {n / mixed_s:,.0f} readings/s; no rules: {n / empty_s:,.0f} readings/s")
        emit(
            "readings_per_s_mix",
            n / mixed_s,
            "readings/s",
            "the same readings through the engine with no rules",
            n / empty_s,
            "100 rules (40 threshold, 30 windowed, 30 for-duration) over 10,000 devices",
            n,
        )


if __name__ == "__main__":
    main()
