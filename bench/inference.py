"""Inference throughput and latency: the model service beside bare onnxruntime.

Run ``python bench/inference.py [--quick]``. Prints one JSON line per figure on stdout
(DESIGN.md, Benchmarks) and progress on stderr. The model is the built-in pump
anomaly detector (IsolationForest, 50 trees, skl2onnx) trained on simulated pumps;
the baseline is ``session.run`` on a bare onnxruntime session of the same artifact,
with the same options, on the same batches, in the same run.

* ``predictions_per_s_inprocess_batch``: :meth:`InferenceService.predict` on batches
  of 100 rows (routing, validation, logging every prediction, drift windows included).
* ``predictions_per_s_inprocess_single``: the same, one row per call.
* ``predictions_per_s_http_batch``: ``POST /api/v1/models/{name}:predict`` with 100
  rows per request over keep-alive HTTP (uvicorn in a thread of this process).
* ``latency_p99_ms_http_single``: p99 of one-row requests over HTTP; baseline the p99
  of one-row bare ``session.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import uvicorn

from _common import Report
from trellis.api.app import create_app
from trellis.core.clock import now_ms
from trellis.core.config import MlSettings, Settings, SimSettings
from trellis.core.net import free_port
from trellis.core.types import Reading
from trellis.ml import Feature, PredictRow
from trellis.ml.training import feature_rows, train_isolation_forest
from trellis.platform import Platform
from trellis.sim.assets import Pump

BENCH = "inference"
REPORT = Report(BENCH)
log = REPORT.log
emit = functools.partial(REPORT.emit, digits=3)
NAME = "pump-anomaly"
FEATURES = [Feature("temperature", "°C"), Feature("vibration", "mm/s"), Feature("pressure", "bar")]
BATCH = 100


def prepare(data_dir: Path) -> tuple[Settings, bytes, np.ndarray]:
    """Stored pump telemetry, a trained model registered and promoted; its artifact."""
    settings = Settings(
        data_dir=data_dir,
        sim=SimSettings(pumps=4, rooms=0, fault_device=None),
        ml=MlSettings(holdout_s=300),
    )
    platform = Platform(settings)
    try:
        platform.seed_demo()
        start = now_ms() - 600_000
        for i in range(1, 5):
            pump = Pump(f"pump-{i:04d}", seed=i)
            readings = [
                Reading(platform.tenant, pump.device_id, metric, ts, value)
                for ts in range(start, start + 600_000, 1000)
                for metric, value in pump.step(ts).items()
            ]
            platform.store.write(readings)
        devices = [f"pump-{i:04d}" for i in range(1, 5)]
        rows = feature_rows(
            platform.store, platform.tenant, devices, [f.name for f in FEATURES], start, now_ms()
        )
        trained = train_isolation_forest(
            rows, FEATURES, device_model="pump", window=(start, now_ms()), devices=devices
        )
        platform.models.register_trained(platform.tenant, NAME, "1.0.0", trained, "bench")
        result = platform.models.promote(platform.tenant, NAME, "1.0.0", "bench")
        assert not hasattr(result, "checks"), result
    finally:
        platform.close()
    return settings, trained.onnx, np.asarray(rows, dtype=np.float32)


def bare_session(onnx: bytes) -> ort.InferenceSession:
    """The baseline: the same artifact and session options, nothing around it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


def rate(fn, calls: int, per_call: int) -> float:
    """Predictions per second of ``calls`` calls of ``fn``."""
    fn()
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls * per_call / (time.perf_counter() - started)


def paired_rates(bare, ours, calls: int, per_call: int, rounds: int = 10) -> tuple[float, float]:
    """Median rates of ``bare`` and ``ours`` measured in alternating rounds, so a noisy
    neighbour on the machine slows both alike and the ratio holds."""
    bare_rates, our_rates = [], []
    for _ in range(rounds):
        bare_rates.append(rate(bare, max(1, calls // rounds), per_call))
        our_rates.append(rate(ours, max(1, calls // rounds), per_call))
    return float(np.median(bare_rates)), float(np.median(our_rates))


def p99_ms(fn, calls: int) -> float:
    """p99 latency of ``fn`` in milliseconds."""
    fn()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 99))


def serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    """The real app on a free port, in a thread."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


async def in_process(settings, session, rows, batch, one, calls: int) -> None:
    """In-process figures with the platform running (its task writes the log)."""
    platform = Platform(settings)
    try:
        async with platform.running():
            service = platform.models.inference
            tenant = platform.tenant
            log("in process, batched")
            base, value = await asyncio.to_thread(
                paired_rates,
                lambda: session.run(None, {"X": batch}),
                lambda: service.predict(tenant, NAME, rows),
                calls,
                BATCH,
            )
            emit(
                "predictions_per_s_inprocess_batch",
                value,
                "predictions/s",
                "bare onnxruntime session.run, same model and batches",
                base,
                ">= 0.8 ratio",
                calls * BATCH,
            )
            log("in process, single")
            base, value = await asyncio.to_thread(
                paired_rates,
                lambda: session.run(None, {"X": one}),
                lambda: service.predict(tenant, NAME, rows[:1]),
                calls,
                1,
            )
            emit(
                "predictions_per_s_inprocess_single",
                value,
                "predictions/s",
                "bare onnxruntime session.run, one row",
                base,
                "report",
                calls,
            )
    finally:
        platform.close()


def http_figures(settings, session, rows, batch, one, calls: int) -> None:
    """Figures over HTTP against the real app."""
    server, thread, url = serve(settings)
    try:
        with httpx.Client(base_url=url) as http:
            path = f"/api/v1/models/{NAME}:predict"
            body = {"rows": [{"features": r.features} for r in rows]}
            single = {"rows": body["rows"][:1]}

            def post(payload: dict) -> None:
                response = http.post(path, json=payload)
                response.raise_for_status()

            log("over HTTP, batched")
            base, value = paired_rates(
                lambda: session.run(None, {"X": batch}), lambda: post(body), calls, BATCH
            )
            emit(
                "predictions_per_s_http_batch",
                value,
                "predictions/s",
                "bare onnxruntime session.run, same model and batches",
                base,
                "report",
                calls * BATCH,
            )
            log("over HTTP, single p99")
            base = p99_ms(lambda: session.run(None, {"X": one}), calls)
            value = p99_ms(lambda: post(single), calls)
            emit(
                "latency_p99_ms_http_single",
                value,
                "ms",
                "bare onnxruntime session.run p99, one row",
                base,
                "<= 5 ms",
                calls,
            )
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a run under 60 s")
    args = parser.parse_args()
    calls = 200 if args.quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        log("training and registering the model")
        settings, onnx, x = prepare(Path(tmp))
        session = bare_session(onnx)
        batch = x[:BATCH]
        one = x[:1]
        rows = [
            PredictRow(
                dict(zip(["temperature", "vibration", "pressure"], map(float, r), strict=True))
            )
            for r in batch
        ]

        asyncio.run(in_process(settings, session, rows, batch, one, calls))
        http_figures(settings, session, rows, batch, one, calls)


if __name__ == "__main__":
    main()
