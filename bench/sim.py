"""Simulator throughput: readings/s a 10,000-device physics fleet produces on one core.

Run ``python bench/sim.py [--quick] [--ticks N]``. Prints one JSON line per figure on
stdout (DESIGN.md, Benchmarks) and progress on stderr:

* ``readings_per_s_10k_devices``: measured values produced by :class:`Simulation` for
  10,000 devices across 50 sites (6,000 pumps × 8 metrics, 3,900 HVAC zones × 3,
  50 chillers × 4, 50 meters × 2), every device reporting every step, with dropped
  messages, duplicate bursts and faults switched on: the full physics, misbehaviour
  and framing of each step. Baseline: numpy's raw rate of drawing the same number of
  standard normal values per step (``Generator.standard_normal``), in the same run.
  Target: ≥ 500,000 readings/s.
* ``readings_per_s_encoded``: the same fleet turned into device messages (one JSON
  telemetry payload per device and step, :class:`MessageEncoder`), i.e. what a load
  generator publishes. Baseline: ``msgspec.json.encode`` of the same payloads built
  in advance (the floor of encoding alone), same run.

Single-threaded by construction: the simulation is numpy element-wise code, and the
BLAS thread pools are pinned to one thread before numpy loads.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402  # after pinning the thread pools
import time  # noqa: E402

import msgspec  # noqa: E402
import numpy as np  # noqa: E402

from _common import Report  # noqa: E402
from trellis.ingest.decode import TelemetryPayload  # noqa: E402
from trellis.sim.engine import DeviceFaults, FaultPlan, Plan, Simulation, SitePlan  # noqa: E402
from trellis.sim.outputs import MessageEncoder  # noqa: E402

BENCH = "sim"
REPORT = Report(BENCH)
log = REPORT.log
SITES = 50
PER_SITE = {"pump": 120, "zone": 78, "chiller": 1, "meter": 1}  # 200 devices per site


def plan(ticks: int) -> Plan:
    """The 10,000-device fleet: 50 sites, faults on a few assets, misbehaving senders."""
    return Plan(
        sites=[SitePlan(f"site-{i:02d}", dict(PER_SITE), 1.0) for i in range(SITES)],
        start_ms=1_736_150_400_000,  # a Monday, 08:00 UTC: zones occupied
        duration_s=float(ticks),
        step_s=1.0,
        seed=1,
        devices=DeviceFaults(drop_rate=0.01, duplicate_rate=0.001),
        faults=[
            FaultPlan("pump-0007", "bearing_wear", onset_s=1, growth_s=60),
            FaultPlan("pump-0100", "cavitation", onset_s=1, growth_s=60),
            FaultPlan("zone-0010", "stuck_damper", onset_s=1),
            FaultPlan("chiller-0003", "fouling", onset_s=0, growth_s=600),
            FaultPlan("zone-0042", "stuck_sensor", onset_s=2),
        ],
    )


def simulate(ticks: int) -> tuple[float, int, int]:
    """(seconds, readings, devices) for ``ticks`` steps of the fleet."""
    sim = Simulation(plan(ticks))
    devices = len(sim.device_ids())
    sim.step()  # warm-up: first-step allocations
    readings = 0
    began = time.perf_counter()
    for _, frames in sim:
        readings += sum(frame.readings for frame in frames)
    return time.perf_counter() - began, readings, devices


def raw_numpy(ticks: int, per_tick: int) -> float:
    """Seconds numpy takes to draw ``per_tick`` standard normals ``ticks`` times."""
    rng = np.random.default_rng(1)
    began = time.perf_counter()
    for _ in range(ticks):
        rng.standard_normal(per_tick)
    return time.perf_counter() - began


def encoded(ticks: int) -> tuple[float, float, int]:
    """(seconds simulating + encoding, seconds encoding prebuilt payloads, readings)."""
    sim = Simulation(plan(ticks))
    encoder = MessageEncoder("default", "bench")
    readings = 0
    began = time.perf_counter()
    payloads: list[TelemetryPayload] = []
    for ts, frames in sim:
        messages = encoder.messages(frames, ts)
        readings += sum(frame.readings for frame in frames)
        if not payloads:
            payloads = [msgspec.json.decode(m.payload, type=TelemetryPayload) for m in messages]
    seconds = time.perf_counter() - began
    encode = msgspec.json.Encoder().encode
    began = time.perf_counter()
    for _ in range(ticks):
        for payload in payloads:
            encode(payload)
    return seconds, time.perf_counter() - began, readings


def line(figure: str, value: float, baseline: str, baseline_value: float, n: int) -> None:
    """A figure in readings/s; the simulator uses one core."""
    target = ">= 500000 readings/s"
    machine = f"{os.cpu_count()} cores, 1 used"
    REPORT.emit(figure, value, "readings/s", baseline, baseline_value, target, n, machine=machine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s)")
    parser.add_argument("--ticks", type=int, default=None, help="steps to simulate")
    args = parser.parse_args()
    ticks = args.ticks or (100 if args.quick else 1000)
    log(f"simulating {ticks} steps of a 10,000-device fleet")
    seconds, readings, devices = simulate(ticks)
    per_tick = readings // max(1, ticks - 1)
    baseline = raw_numpy(ticks, per_tick)
    value = readings / seconds
    baseline_value = per_tick * ticks / baseline
    log(f"{devices} devices, {readings} readings in {seconds:.2f} s")
    line(
        "readings_per_s_10k_devices",
        value,
        "numpy Generator.standard_normal, same values per step, same run",
        baseline_value,
        readings,
    )
    few = max(2, ticks // 20)
    log(f"simulating and encoding {few} steps as device messages")
    total, floor, readings = encoded(few)
    line(
        "readings_per_s_encoded",
        readings / total,
        "msgspec.json.encode of the same payloads built in advance, same run",
        readings / floor,
        readings,
    )


if __name__ == "__main__":
    main()
