"""The model API over HTTP: register, promote through the gate, predict, refusals."""

from __future__ import annotations

import httpx
import msgspec

from tests.ml.conftest import train
from tests.serving import serve
from trellis.api.app import create_app
from trellis.platform import Platform

ROW = {"temperature": 62.0, "vibration": 2.2, "pressure": 4.1}


def test_register_promote_predict_over_http(platform: Platform) -> None:
    """A trained ONNX file registered by PUT, promoted, served by routed and pinned
    predict; NaN, bad files and unknown versions get 422/404 with the reason."""
    trained = train(platform)
    signature = msgspec.json.encode(trained.signature).decode()
    with serve(create_app(platform.settings)) as url, httpx.Client(base_url=url) as http:
        api = "/api/v1/models/pump-anomaly"
        bad = http.put(f"{api}/versions/1.0.0", params={"signature": signature}, content=b"x")
        assert bad.status_code == 422
        assert "not a valid ONNX model" in bad.json()["detail"]
        put = http.put(
            f"{api}/versions/1.0.0",
            params={"signature": signature, "registered_by": "ci"},
            content=trained.onnx,
        )
        assert put.status_code == 201, put.text
        assert put.json()["stage"] == "dev"
        assert put.json()["registered_by"] == "ci"
        promoted = http.post(f"{api}/promote", json={"version": "1.0.0", "actor": "alice"})
        assert promoted.status_code == 200, promoted.text
        rows = {"rows": [{"features": ROW, "device": "pump-0001"}, {"features": ROW}]}
        routed = http.post(f"{api}:predict", json=rows)
        assert routed.status_code == 200, routed.text
        assert [p["version"] for p in routed.json()["predictions"]] == ["1.0.0", "1.0.0"]
        assert set(routed.json()["predictions"][0]["outputs"]) == {"label", "scores"}
        pinned = http.post(f"{api}/versions/1.0.0:predict", json=rows)
        assert pinned.status_code == 200
        nan = http.post(
            f"{api}/versions/1.0.0:predict",
            content=b'{"rows": [{"features": {"temperature": NaN, "vibration": 1}}]}',
        )
        assert nan.status_code == 422
        assert "invalid request body" in nan.json()["detail"]
        missing = http.post(f"{api}/versions/1.0.0:predict", json={"rows": [{"features": {}}]})
        assert missing.status_code == 422
        assert "missing" in missing.json()["detail"]
        assert http.post(f"{api}/versions/7.0.0:predict", json=rows).status_code == 404
        assert http.post("/api/v1/models/nope:predict", json=rows).status_code == 404
        listed = http.get("/api/v1/models").json()
        assert listed[0]["production"] == "1.0.0"
        stats = http.get(f"{api}/stats").json()
        assert stats[0]["served"] == 4
        assert stats[0]["footprint"]["gco2e"] > 0
        drift = http.post(f"{api}/drift:check")
        assert drift.status_code == 200
        assert drift.json()["version"] == "1.0.0"


def test_model_pages_show_versions_routing_drift_and_carbon(platform: Platform) -> None:
    """The dashboard lists models and shows a model's versions, chart data and carbon."""
    models = platform.models
    models.register_trained("default", "pump-anomaly", "1.0.0", train(platform), "ci")
    models.promote("default", "pump-anomaly", "1.0.0", "alice")
    from trellis.ml import PredictRow

    models.inference.predict("default", "pump-anomaly", [PredictRow(ROW, device="pump-0001")])
    models.log.flush()
    with serve(create_app(platform.settings)) as url, httpx.Client(base_url=url) as http:
        listing = http.get("/models")
        assert listing.status_code == 200
        assert 'href="/models/pump-anomaly"' in listing.text
        page = http.get("/models/pump-anomaly")
        assert page.status_code == 200
        assert 'id="versions-table"' in page.text
        assert "1.0.0" in page.text
        assert 'id="carbon-table"' in page.text
        assert '"series": {"1.0.0"' in page.text or '"series":{"1.0.0"' in page.text
        assert http.get("/models/nope").status_code == 404
        assert http.get("/static/models.js").status_code == 200


def test_a_failed_gate_is_409_with_the_report(platform: Platform) -> None:
    """Promoting a candidate that cannot run answers 409 with the checks that failed."""
    from tests.ml.test_refusals import SIGNATURE, _throwing_model

    platform.models.register("default", "broken", "1.0.0", _throwing_model(), SIGNATURE, "t")
    with serve(create_app(platform.settings)) as url, httpx.Client(base_url=url) as http:
        response = http.post("/api/v1/models/broken/promote", json={"version": "1.0.0"})
        assert response.status_code == 409
        assert response.json()["passed"] is False
        assert [c["name"] for c in response.json()["checks"]] == ["runs"]
