"""Bad input to the registry and inference is refused with a clear error, loses nothing."""

from __future__ import annotations

import math
import sys

import pytest

from tests.ml.conftest import PUMP_FEATURES, train
from trellis.core.errors import ConflictError, NotFoundError
from trellis.ml._extra import _missing, require_ml
from trellis.ml.errors import MissingExtraError, ModelFailedError, ModelFileError, SignatureError
from trellis.ml.gate import GateReport
from trellis.ml.inference import PredictRow
from trellis.ml.routing import RoutingMode, RoutingPolicy
from trellis.ml.signature import Output, Signature
from trellis.platform import Platform

NAME = "pump-anomaly"
ROW = {"temperature": 60.0, "vibration": 2.1, "pressure": 4.0}
SIGNATURE = Signature("pump", PUMP_FEATURES, [Output("scores", "score")])


def _throwing_model() -> bytes:
    """A valid ONNX graph that fails at run time (reshapes [n, 3] into [7])."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [7])
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [7])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["X", "shape"], ["scores"])], "throws", [x], [y], [shape]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_not_onnx_corrupt_and_mismatched_files_are_refused(platform: Platform) -> None:
    """Random bytes, a truncated model and a model whose feature count differs from its
    signature are refused before anything is stored or registered."""
    good = train(platform).onnx
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        platform.models.register("default", NAME, "1.0.0", b"GIF89a not a model", SIGNATURE, "t")
    with pytest.raises(ModelFileError):
        platform.models.register("default", NAME, "1.0.0", good[: len(good) // 2], SIGNATURE, "t")
    two = Signature("pump", PUMP_FEATURES[:2], [Output("scores")])
    with pytest.raises(ModelFileError, match="reads 3 features, the signature declares 2"):
        platform.models.register("default", NAME, "1.0.0", good, two, "t")
    wrong_out = Signature("pump", PUMP_FEATURES, [Output("probability")])
    with pytest.raises(ModelFileError, match="not produced by the model"):
        platform.models.register("default", NAME, "1.0.0", good, wrong_out, "t")
    assert platform.models.registry.models("default") == []


def test_bad_versions_and_unknown_versions(platform: Platform) -> None:
    """A non-semantic version, a duplicate, and predicting an unknown version are refused."""
    trained = train(platform)
    with pytest.raises(ValueError, match="not semantic"):
        platform.models.register_trained("default", NAME, "v1", trained, "t")
    platform.models.register_trained("default", NAME, "1.0.0", trained, "t")
    with pytest.raises(ConflictError, match="already registered"):
        platform.models.register_trained("default", NAME, "1.0.0", trained, "t")
    with pytest.raises(NotFoundError, match=r"9\.9\.9"):
        platform.models.inference.predict("default", NAME, [PredictRow(ROW)], version="9.9.9")
    with pytest.raises(ConflictError, match="no version in production"):
        platform.models.inference.predict("default", NAME, [PredictRow(ROW)])


@pytest.mark.parametrize(
    ("features", "match"),
    [
        ({**ROW, "temperature": math.nan}, "NaN/inf refused"),
        ({**ROW, "pressure": math.inf}, "NaN/inf refused"),
        ({"temperature": 1.0, "vibration": 2.0}, r"missing \['pressure'\]"),
        ({**ROW, "speed": 1.0}, r"unexpected \['speed'\]"),
        ({**ROW, "vibration": "high"}, "is not a number"),
    ],
)
def test_bad_features_are_refused(platform: Platform, features: dict, match: str) -> None:
    """NaN, infinities, missing, extra and non-numeric features name the feature."""
    platform.models.register_trained("default", NAME, "1.0.0", train(platform), "t")
    with pytest.raises(SignatureError, match=match):
        platform.models.inference.predict(
            "default", NAME, [PredictRow(ROW), PredictRow(features)], version="1.0.0"
        )
    assert platform.models.log.pending == 0


def test_features_from_the_wrong_device_model_are_refused(platform: Platform) -> None:
    """A row from a registered device of another model does not reach a pump model."""
    from trellis.core.types import Device

    platform.registry.register(Device("default", "room-9", "room"))
    platform.models.register_trained("default", NAME, "1.0.0", train(platform), "t")
    with pytest.raises(SignatureError, match="room-9 is a 'room'"):
        platform.models.inference.predict(
            "default", NAME, [PredictRow(ROW, device="room-9")], version="1.0.0"
        )


def test_a_second_promotion_is_refused_while_one_runs(platform: Platform) -> None:
    """While a promotion holds the model's lock, another promotion gets a ConflictError."""
    platform.models.register_trained("default", NAME, "1.0.0", train(platform), "t")
    with platform.models.registry.promotion_lock("default", NAME):
        assert platform.models.registry.model("default", NAME).promoting
        with pytest.raises(ConflictError, match="already running"):
            platform.models.promote("default", NAME, "1.0.0", "bob")
    assert platform.models.registry.production("default", NAME) is None
    platform.models.promote("default", NAME, "1.0.0", "bob")


def test_a_stale_promotion_lock_is_taken_over(platform: Platform) -> None:
    """A lock left by a process that died mid-promotion does not block promotions forever."""
    import sqlalchemy as sa

    from trellis.store.metadata import ml_models

    platform.models.register_trained("default", NAME, "1.0.0", train(platform), "t")
    with platform.engine.begin() as c:
        c.execute(sa.update(ml_models).values(promoting_ms=1))
    platform.models.promote("default", NAME, "1.0.0", "bob")
    assert platform.models.registry.model("default", NAME).production == "1.0.0"


def test_a_throwing_model_is_isolated_and_alerted(platform: Platform) -> None:
    """A served model that throws raises ModelFailedError and an alert; predict_or falls
    back; the same model as a shadow never disturbs the champion's answers."""
    models = platform.models
    models.register("default", "broken", "1.0.0", _throwing_model(), SIGNATURE, "t")
    with pytest.raises(ModelFailedError, match=r"broken 1\.0\.0 failed"):
        models.inference.predict("default", "broken", [PredictRow(ROW)], version="1.0.0")
    alert = platform.alerts.get("default", models.alerts_of("default", "broken")[0])
    assert alert.type == "model_failure"

    models.register_trained("default", NAME, "1.0.0", train(platform), "t")
    models.promote("default", NAME, "1.0.0", "t")
    models.register("default", NAME, "1.1.0", _throwing_model(), SIGNATURE, "t")
    models.set_routing("default", NAME, RoutingPolicy(RoutingMode.SHADOW, "1.1.0"))
    result = models.inference.predict("default", NAME, [PredictRow(ROW, device="pump-0001")])
    assert [p.version for p in result.predictions] == ["1.0.0"]
    assert result.shadow == []

    fallback = models.inference.predict_or(
        "default", "broken", [PredictRow(ROW)], lambda row: {"scores": 0.0}, version="1.0.0"
    )
    assert fallback.predictions[0].version == "fallback"


def test_tampered_artifact_is_refused(platform: Platform) -> None:
    """An artifact changed on disk after registration no longer matches its sha256."""
    version = platform.models.register_trained("default", NAME, "1.0.0", train(platform), "t")
    path = platform.models.artifacts._path(version.sha256)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ModelFailedError, match="does not match its sha256"):
        platform.models.inference.predict("default", NAME, [PredictRow(ROW)], version="1.0.0")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the ml extra a model feature says `pip install 'trellis-aiot[ml]'`."""
    _missing.cache_clear()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    try:
        with pytest.raises(MissingExtraError, match=r"pip install 'trellis-aiot\[ml\]'"):
            require_ml()
    finally:
        monkeypatch.undo()
        _missing.cache_clear()


def test_a_throwing_candidate_fails_the_gate(platform: Platform) -> None:
    """A candidate that throws fails the gate with a 'runs' check; the lock is released."""
    models = platform.models
    models.register("default", "broken", "1.0.0", _throwing_model(), SIGNATURE, "t")
    report = models.promote("default", "broken", "1.0.0", "alice")
    assert isinstance(report, GateReport)
    assert report.failed == ["runs"]
    assert "Reshape" in report.checks[0].detail
    assert not models.registry.model("default", "broken").promoting
