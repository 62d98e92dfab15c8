"""Models in the rule engine, with a real ONNX model in the registry: a rule whose
condition reads the model's prediction ("and the anomaly model agrees"), a predict
action whose output becomes a stored derived metric, and the bad cases (unknown
model, model timeout) that fall back or dead-letter, counted."""

from __future__ import annotations

import asyncio
import functools
import itertools
import statistics
from typing import Any

import httpx
import msgspec

from tests.helpers import telemetry
from tests.ml.conftest import pump_readings, train
from tests.protocols.mqtt.conftest import eventually
from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.core.clock import now_ms
from trellis.core.config import RuleSettings
from trellis.devices.models import MetricSpec
from trellis.ml.inference import PredictRow
from trellis.ml.registry import Stage
from trellis.ml.training import TrainedModel
from trellis.platform import Platform
from trellis.rules.flows import parse_flow
from trellis.rules.spec import StreamRule
from trellis.rules.store import parse_rule

NAME = "pump-anomaly"
FAULTY = {"temperature": 240.0, "vibration": 95.0, "pressure": 95.0}
_clock = itertools.count(1)
_trained: list[TrainedModel] = []


def _promoted(platform: Platform) -> dict[str, float]:
    """pump-anomaly 1.0.0 in production, and a healthy row (the median pump) that it
    scores normal, where FAULTY scores anomalous."""
    if not _trained:  # one training for the module: the model is not the subject
        _trained.append(train(platform, trees=20))
    platform.models.register_trained(platform.tenant, NAME, "1.0.0", _trained[0], "t")
    # Straight to production: the gate (tested in test_lifecycle) is not the subject here.
    platform.models.registry.set_stage(platform.tenant, NAME, "1.0.0", Stage.PRODUCTION, "t")
    history = pump_readings(platform.tenant, "pump-0001", 100, now_ms() - 600_000, 600)
    healthy_row = {
        metric: statistics.median(r.value for r in history if r.metric == metric)
        for metric in FAULTY
    }
    rows = [PredictRow(healthy_row), PredictRow(FAULTY)]
    healthy, faulty = platform.models.inference.predict(platform.tenant, NAME, rows).predictions
    assert healthy.outputs["scores"] > 0 > faulty.outputs["scores"]
    return healthy_row


async def _send(platform: Platform, device: str, values: dict[str, float]) -> None:
    ts = now_ms() - 5_000 + next(_clock)
    result = await platform.pipeline.submit_and_wait(
        telemetry(device, values, ts=ts, received_ms=now_ms())
    )
    assert not result.quarantined, result.reason


def _rule(**fields: Any) -> StreamRule:
    base: dict[str, Any] = {
        "id": "agrees",
        "metric": "vibration",
        "severity": "major",
        "select": {"models": ["pump"]},
        "condition": "value > 1.0 && prediction.scores < 0.0",
        "model": {"name": NAME, "refresh_s": 0},
    }
    rule = parse_rule({**base, **fields})
    assert isinstance(rule, StreamRule)
    return rule


def _opened(platform: Platform, rule: str) -> list[str]:
    return sorted(a.device for a in platform.alerts.find(platform.tenant) if a.rule == rule)


def test_a_rule_fires_only_when_the_model_agrees(platform: Platform) -> None:
    """Vibration above 1 mm/s on both pumps; only the pump the model finds anomalous
    raises. The model runs once per batch for the devices that moved, and is counted."""
    healthy = _promoted(platform)
    platform.rules.put(platform.tenant, _rule())

    async def scenario() -> None:
        async with platform.running():
            await _send(platform, "pump-0001", healthy)
            await _send(platform, "pump-0002", FAULTY)
            await eventually(lambda: _opened(platform, "agrees") == ["pump-0002"], "the alert")
            engine = platform.rule_engine
            [model] = engine.model_stats(platform.tenant)
            assert (model.model, model.rules, model.device_model) == (NAME, ["agrees"], "pump")
            assert model.features == ["temperature", "vibration", "pressure"]
            assert model.rows == 2
            assert (model.errors, model.timeouts) == (0, 0)
            [stats] = [s for s in engine.stats(platform.tenant) if s.rule == "agrees"]
            assert (stats.readings, stats.raised, stats.model_fallbacks) == (2, 1, 0)

    asyncio.run(scenario())


def test_a_model_timeout_reads_the_fallback_and_is_counted(platform: Platform) -> None:
    """A model that cannot answer within timeout_s: the rule reads the fallback
    (here: agree), the timeout is counted, nothing stalls."""
    healthy = _promoted(platform)
    model = {"name": NAME, "refresh_s": 0, "timeout_s": 1e-6, "fallback": -1.0}
    platform.rules.put(platform.tenant, _rule(model=model))

    async def scenario() -> None:
        async with platform.running():
            await _send(platform, "pump-0001", healthy)
            await eventually(lambda: _opened(platform, "agrees") == ["pump-0001"], "fallback")
            [stats] = platform.rule_engine.model_stats(platform.tenant)
            assert stats.timeouts == 1
            assert "no prediction within 1e-06 s" in stats.last_error

    asyncio.run(scenario())


def test_a_predict_action_stores_the_model_output_as_a_derived_metric(
    platform: Platform,
) -> None:
    """On raise, the model scores the device's latest features and the score is stored
    as anomaly_score through ingest; an unknown model and a timeout are dead letters."""
    _promoted(platform)
    pump = platform.registry.models["pump"]
    platform.registry.put_model(
        msgspec.structs.replace(
            pump, version="1.1.0", metrics={**pump.metrics, "anomaly_score": MetricSpec("1")}
        ),
        "yaml",
    )
    hot = {"metric": "temperature", "severity": "major", "condition": "value > 200.0"}
    score = {"type": "predict", "model": NAME, "emit": "anomaly_score", "output": "scores"}
    platform.rules.put(platform.tenant, parse_rule({"id": "score", **hot, "actions": [score]}))
    ghost = {**score, "model": "nope"}
    platform.rules.put(platform.tenant, parse_rule({"id": "ghost", **hot, "actions": [ghost]}))
    slow = {**score, "timeout_s": 1e-6}
    platform.rules.put(platform.tenant, parse_rule({"id": "slow", **hot, "actions": [slow]}))

    async def scenario() -> None:
        async with platform.running():
            await _send(platform, "pump-0003", FAULTY)
            letters = platform.rule_engine.actions.dead_letters
            await eventually(lambda: len(letters(platform.tenant)) == 2, "two dead letters")
            errors = {d.rule: d.error for d in letters(platform.tenant)}
            assert errors["ghost"] == "unknown model 'nope' (or none in production)"
            assert errors["slow"] == f"model '{NAME}' gave no answer within 1e-06 s"
            stored = functools.partial(
                platform.store.query, "default", "pump-0003", "anomaly_score", 0, 2**62
            )
            await eventually(lambda: bool(stored()), "the derived metric")
            [point] = stored()
            expected = platform.models.inference.predict(
                platform.tenant, NAME, [PredictRow(FAULTY)]
            ).predictions[0]
            assert abs(point.value - expected.outputs["scores"]) < 1e-6
            # The action counts as delivered once its emit returned, a moment after the
            # point became readable.
            delivered = platform.rule_engine.actions.delivered
            await eventually(lambda: delivered.get("score") == 1, "the action counted")

    asyncio.run(scenario())


def test_the_api_refuses_a_rule_naming_an_unknown_model(platform: Platform) -> None:
    """An unknown model in `model` or in a predict action is 422 and names the field;
    `prediction` without a model is refused when parsed."""
    rule = msgspec.to_builtins(_rule(model={"name": "nope"}))
    action = {"type": "predict", "model": "nope", "emit": "anomaly_score"}
    with serve(create_app(platform.settings)) as url:
        refused = httpx.put(f"{url}/api/v1/rules/agrees", json=rule)
        assert refused.status_code == 422
        assert refused.json()["detail"] == (
            "$.model.name: unknown model 'nope', or it has no version in production"
        )
        plain = {"id": "p", "metric": "temperature", "severity": "minor", "condition": "true"}
        refused = httpx.put(f"{url}/api/v1/rules/p", json={**plain, "actions": [action]})
        assert refused.status_code == 422
        assert "$.actions: unknown model 'nope'" in refused.json()["detail"]
        no_model = {**plain, "condition": "prediction.scores < 0.0"}
        refused = httpx.put(f"{url}/api/v1/rules/p", json=no_model)
        assert refused.status_code == 422
        assert "reads `prediction` but the rule names no model" in refused.json()["detail"]


def test_flow_node_stats_show_model_and_sub_flow_nodes(platform: Platform) -> None:
    """A deployed flow source → model → condition → alert, plus a sub-flow node: the
    API's per-node stats count readings, model calls and rows, raises, and the
    included rule under the sub-flow node."""
    healthy = _promoted(platform)
    hot = {
        "id": "hot",
        "nodes": [
            {"id": "t", "type": "source", "metric": "temperature", "select": {"models": ["pump"]}},
            {"id": "over", "type": "condition", "condition": "value > 200.0"},
            {"id": "page", "type": "alert", "severity": "minor"},
        ],
        "edges": [["t", "over"], ["over", "page"]],
    }
    agrees = {
        "id": "agrees",
        "nodes": [
            {"id": "v", "type": "source", "metric": "vibration", "select": {"models": ["pump"]}},
            {"id": "m", "type": "model", "model": NAME, "refresh_s": 0},
            {"id": "c", "type": "condition", "condition": "prediction.scores < 0.0"},
            {"id": "a", "type": "alert", "severity": "major"},
            {"id": "inc", "type": "subflow", "flow": "hot@1"},
        ],
        "edges": [["v", "m"], ["m", "c"], ["c", "a"]],
    }
    platform.flows.save(platform.tenant, parse_flow(hot))
    platform.flows.save(platform.tenant, parse_flow(agrees))
    platform.flows.deploy(platform.tenant, "agrees")
    with serve(create_app(platform.settings)) as url, httpx.Client(base_url=url) as http:
        for device, values in (("pump-0001", healthy), ("pump-0002", FAULTY)):
            body = {"ts": now_ms() - 1000, "values": values}
            assert http.post(f"/api/v1/telemetry/{device}", json=body).status_code == 202

        def nodes() -> dict[str, Any]:
            return {n["node"]: n for n in http.get("/api/v1/flows/agrees/stats").json()}

        wait_until(lambda: nodes()["c"]["raised"] == 1, what="the model-agreed alert")
        wait_until(lambda: nodes()["inc"]["raised"] == 1, what="the sub-flow's alert")
        stats = nodes()
        assert (stats["v"]["readings"], stats["m"]["readings"], stats["c"]["readings"]) == (2, 2, 2)
        assert stats["m"]["type"] == "model"
        assert stats["m"]["model_rows"] == 2
        assert stats["m"]["model_calls"] >= 1
        assert (stats["m"]["errors"], stats["m"]["model_timeouts"]) == (0, 0)
        assert stats["a"]["raised"] == 1
        assert stats["inc"]["type"] == "subflow"
        assert stats["inc"]["rules"] == ["flow.agrees.inc.over"]
        assert stats["inc"]["readings"] == 2


def test_a_model_promoted_after_the_rule_is_picked_up(platform: Platform) -> None:
    """A rule saved before its model exists reads the fallback and says why; once the
    model is in production the engine finds it on its own and the model decides."""
    platform.rules.put(platform.tenant, _rule())
    fast = RuleSettings(tick_s=0.05, model_recheck_s=0.1)
    later = Platform(platform.settings.model_copy(update={"rules": fast}))

    async def scenario() -> None:
        async with later.running():
            engine = later.rule_engine

            def model_error() -> str:
                found = engine.model_stats(later.tenant)
                return found[0].last_error if found else ""

            await eventually(lambda: "unknown model" in model_error(), "the unknown model")
            await asyncio.to_thread(_promoted, later)
            await eventually(lambda: bool(engine.model_stats(later.tenant)[0].features), "it")
            await _send(later, "pump-0002", FAULTY)
            await eventually(lambda: _opened(later, "agrees") == ["pump-0002"], "the alert")

    try:
        asyncio.run(scenario())
    finally:
        later.close()
