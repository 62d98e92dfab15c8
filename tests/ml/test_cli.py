"""`trellis models` from a terminal: train with a progress bar, list, promote, predict."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trellis.cli import app
from trellis.platform import Platform


def test_train_promote_predict_rollback_from_the_cli(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train registers a version, promote runs the gate, predict prints JSON, rollback
    without a previous champion fails with the reason."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(platform.settings.data_dir))
    monkeypatch.setenv("TRELLIS_ML__HOLDOUT_S", "300")
    runner = CliRunner()
    trained = runner.invoke(app, ["models", "train", "--hours", "1", "--trees", "30"])
    assert trained.exit_code == 0, trained.output
    assert "registered pump-anomaly 1.0.0" in trained.output
    promoted = runner.invoke(app, ["models", "promote", "pump-anomaly", "1.0.0"])
    assert promoted.exit_code == 0, promoted.output
    row = json.dumps({"temperature": 60, "vibration": 2, "pressure": 4})
    predicted = runner.invoke(app, ["models", "predict", "pump-anomaly", row])
    assert predicted.exit_code == 0, predicted.output
    assert '"version":"1.0.0"' in predicted.stdout
    listed = runner.invoke(app, ["models", "list"])
    assert "pump-anomaly" in listed.output
    back = runner.invoke(app, ["models", "rollback", "pump-anomaly"])
    assert back.exit_code == 1
    assert "nothing to roll back to" in back.output


def test_drift_asks_the_running_server(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trellis models drift` prints the server's drift report as JSON and the carbon table."""
    from tests.ml.conftest import train
    from tests.serving import serve
    from trellis.api.app import create_app

    platform.models.register_trained("default", "pump-anomaly", "1.0.0", train(platform), "t")
    platform.models.promote("default", "pump-anomaly", "1.0.0", "t")
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(platform.settings.data_dir))
    with serve(create_app(platform.settings)) as url:
        result = CliRunner().invoke(app, ["models", "drift", "pump-anomaly", "--url", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["version"] == "1.0.0"


def test_register_from_files_and_refuse_a_bad_one(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """`trellis models register` stores an ONNX file with its signature; a file that is
    not ONNX exits 1 with the reason."""
    import msgspec

    from tests.ml.conftest import train

    trained = train(platform)
    model, signature, junk = tmp_path / "m.onnx", tmp_path / "sig.json", tmp_path / "junk.onnx"
    model.write_bytes(trained.onnx)
    signature.write_bytes(msgspec.json.encode(trained.signature))
    junk.write_bytes(b"not a model")
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(platform.settings.data_dir))
    runner = CliRunner()
    ok = runner.invoke(
        app, ["models", "register", "m", "1.0.0", str(model), "--signature", str(signature)]
    )
    assert ok.exit_code == 0, ok.output
    assert "registered m 1.0.0 sha256" in ok.output
    bad = runner.invoke(
        app, ["models", "register", "m", "1.0.1", str(junk), "--signature", str(signature)]
    )
    assert bad.exit_code == 1
    assert "not a valid ONNX model" in bad.output
