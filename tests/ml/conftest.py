"""A platform with stored pump telemetry and trained models, shared by the ML tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import require
from trellis.core.clock import now_ms
from trellis.core.config import MlSettings, Settings, SimSettings
from trellis.core.types import Reading
from trellis.ml.signature import Feature
from trellis.ml.training import TrainedModel, feature_rows, train_isolation_forest
from trellis.platform import Platform
from trellis.sim.assets import Pump


@pytest.fixture(autouse=True)
def _ml_extra() -> None:
    """The ML tests need the ``ml`` extra (``make test`` installs it)."""
    require(
        "the ml extra",
        importlib.util.find_spec("onnxruntime") is not None,
        "pip install -e '.[dev,ml]'",
    )


PUMP_FEATURES = [
    Feature("temperature", "°C"),
    Feature("vibration", "mm/s"),
    Feature("pressure", "bar"),
]
HISTORY_S = 600


def pump_readings(
    tenant: str, device: str, seed: int, start: int, seconds: int, fault_onset_ms: int | None = None
) -> list[Reading]:
    """``seconds`` of 1 Hz telemetry of one simulated pump."""
    pump = Pump(device, seed=seed, fault_onset_ms=fault_onset_ms)
    out = []
    for i in range(seconds):
        ts = start + i * 1000
        out.extend(Reading(tenant, device, m, ts, v) for m, v in pump.step(ts).items())
    return out


@pytest.fixture
def platform(tmp_data_dir: Path) -> Iterator[Platform]:
    """A platform with four pumps and 10 minutes of their stored telemetry."""
    settings = Settings(
        data_dir=tmp_data_dir,
        sim=SimSettings(pumps=4, rooms=0, fault_device=None),
        ml=MlSettings(holdout_s=HISTORY_S / 2, drift_window=200),
    )
    platform = Platform(settings)
    platform.seed_demo()
    start = now_ms() - HISTORY_S * 1000
    for i, device in enumerate(("pump-0001", "pump-0002", "pump-0003", "pump-0004")):
        platform.store.write(pump_readings(platform.tenant, device, 100 + i, start, HISTORY_S))
    yield platform
    platform.close()


def train(platform: Platform, seed: int = 0, trees: int = 40) -> TrainedModel:
    """An IsolationForest on the first half of the stored history."""
    end = now_ms() - HISTORY_S * 500
    start = end - HISTORY_S * 1000
    devices = [d.id for d in platform.registry.find(platform.tenant) if d.model == "pump"]
    rows = feature_rows(
        platform.store, platform.tenant, devices, [f.name for f in PUMP_FEATURES], start, end
    )
    return train_isolation_forest(
        rows,
        PUMP_FEATURES,
        device_model="pump",
        window=(start, end),
        devices=devices,
        trees=trees,
        seed=seed,
    )
