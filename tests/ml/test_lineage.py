"""Lineage of the ML side: a training run's OpenLineage events, and a prediction walked
back to its model version, that version's training datasets and the input readings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from trellis.cli import app
from trellis.ml.inference import PredictRow
from trellis.platform import Platform
from trellis.store.metadata import ml_prediction_batches


def test_a_training_run_emits_openlineage_and_a_prediction_walks_back_to_it(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`trellis models train` emits START and COMPLETE with the runId the version records;
    a logged prediction batch's lineage names the version, its datasets and its inputs."""
    events = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(platform.settings.data_dir))
    monkeypatch.setenv("TRELLIS_FABRIC__LINEAGE_FILE", str(events))
    trained = CliRunner().invoke(app, ["models", "train", "--hours", "1", "--trees", "20"])
    assert trained.exit_code == 0, trained.output
    start, complete = (json.loads(line) for line in events.read_text().splitlines())
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert complete["job"]["name"] == "train.pump-anomaly"
    assert complete["outputs"] == [
        {"namespace": "trellis.models", "name": "default/pump-anomaly@1.0.0", "facets": {}}
    ]
    version = platform.models.registry.get("default", "pump-anomaly", "1.0.0")
    assert version.lineage["run"]["runId"] == complete["run"]["runId"]

    row = PredictRow({"temperature": 60.0, "vibration": 2.0, "pressure": 4.0}, device="pump-0001")
    platform.models.inference.predict("default", "pump-anomaly", [row], version="1.0.0")
    platform.models.inference.log.flush()
    with platform.engine.connect() as c:
        batch_id = c.execute(sa.select(sa.func.max(ml_prediction_batches.c.id))).scalar_one()
    graph = platform.lineage_walker.walk("default", "prediction", str(batch_id))
    relations = {(e.relation, e.target.split(":", 1)[0]) for e in graph.edges}
    assert ("scored_by", "model") in relations
    assert ("trained_on", "dataset") in relations
    inputs = [e.target for e in graph.edges if e.relation == "input"]
    assert {t.split("/")[1] for t in inputs} == {"temperature", "vibration", "pressure"}
    assert all(t.startswith("reading:pump-0001/") for t in inputs)
