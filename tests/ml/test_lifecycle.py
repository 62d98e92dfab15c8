"""The model lifecycle end to end: train, register, promote, shadow, split, gate,
drift alert, rollback — on simulated pump telemetry, in process."""

from __future__ import annotations

from tests.ml.conftest import pump_readings, train
from trellis.core.clock import now_ms
from trellis.ml.gate import GateReport
from trellis.ml.inference import PredictRow
from trellis.ml.registry import ModelVersion, Stage
from trellis.ml.routing import RoutingMode, RoutingPolicy
from trellis.platform import Platform

NAME = "pump-anomaly"


def _rows(readings: list, devices: bool = True) -> list[PredictRow]:
    by_key: dict[tuple[str, int], dict[str, float]] = {}
    for r in readings:
        by_key.setdefault((r.device, r.ts), {})[r.metric] = r.value
    return [
        PredictRow(values, device=dev if devices else None) for (dev, _), values in by_key.items()
    ]


def test_train_shadow_split_gate_drift_rollback(platform: Platform) -> None:
    """v1 trained and promoted, v2 shadowed then split 50/50 sticky per device, promoted
    through the gate; a pump fault in the simulator raises a drift alert; rollback restores v1."""
    models, tenant = platform.models, platform.tenant
    v1 = models.register_trained(tenant, NAME, "1.0.0", train(platform, seed=0), "test-job")
    assert v1.stage is Stage.DEV
    assert len(v1.sha256) == 64
    assert v1.lineage["inputs"]
    assert v1.card["training_window"]
    promoted = models.promote(tenant, NAME, "1.0.0", "alice")
    assert isinstance(promoted, ModelVersion)
    assert promoted.stage is Stage.PRODUCTION

    healthy = pump_readings(tenant, "pump-0001", 100, now_ms() - 60_000, 60)
    v2 = models.register_trained(tenant, NAME, "2.0.0", train(platform, seed=1, trees=60), "bob")
    models.set_routing(tenant, NAME, RoutingPolicy(RoutingMode.SHADOW, "2.0.0"))
    shadowed = models.inference.predict(tenant, NAME, _rows(healthy))
    assert {p.version for p in shadowed.predictions} == {"1.0.0"}
    assert shadowed.shadow == ["2.0.0"]

    models.set_routing(tenant, NAME, RoutingPolicy(RoutingMode.SPLIT, "2.0.0", percent=50))
    fleet = [
        PredictRow(r.features, device=f"pump-x{i:03d}") for i, r in enumerate(_rows(healthy)[:60])
    ]
    first = models.inference.predict(tenant, NAME, fleet)
    again = models.inference.predict(tenant, NAME, fleet)
    served = [p.version for p in first.predictions]
    assert served == [p.version for p in again.predictions]  # sticky per device
    assert 15 <= served.count("2.0.0") <= 45

    report = models.promote(tenant, NAME, v2.version, "alice")
    assert isinstance(report, ModelVersion), report
    assert models.registry.get(tenant, NAME, "1.0.0").stage is Stage.ARCHIVED
    assert models.registry.model(tenant, NAME).routing == RoutingPolicy()

    faulty = pump_readings(tenant, "pump-0003", 7, now_ms() - 300_000, 300, now_ms() - 300_000)
    models.inference.predict(tenant, NAME, _rows(faulty))
    drift = models.check_drift(tenant, NAME)
    assert drift.drifted
    assert drift.version == "2.0.0"
    assert any(f.feature == "vibration" and f.drifted for f in drift.features)
    alert = platform.alerts.get(tenant, models.alerts_of(tenant, NAME)[0])
    assert alert.type == "model_drift"
    assert alert.model_version == "pump-anomaly:2.0.0"
    assert "vibration" in alert.message

    restored = models.rollback(tenant, NAME, "alice")
    assert restored.version == "1.0.0"
    assert restored.stage is Stage.PRODUCTION
    after = models.inference.predict(tenant, NAME, _rows(healthy[:3]))
    assert {p.version for p in after.predictions} == {"1.0.0"}

    stats = {s.version: s for s in models.stats(tenant, NAME)}
    assert stats["2.0.0"].shadow > 0
    assert stats["1.0.0"].served > 0
    assert stats["1.0.0"].footprint.gco2e > 0
    logged = models.log.read(tenant, NAME)
    assert len(logged) == sum(s.served + s.shadow for s in stats.values())
    shadow_digests = {p.inputs_digest for p in logged if p.role == "shadow"}
    served_digests = {p.inputs_digest for p in logged if p.role == "served"}
    assert shadow_digests <= served_digests  # the shadow saw exactly the served traffic
    series = models.score_series(tenant, NAME, 0)
    assert set(series) == {"1.0.0", "2.0.0"}


def test_gate_failure_names_the_check(platform: Platform) -> None:
    """A gate with a required governance review refuses an unreviewed candidate and says so;
    after an approving review the same candidate passes."""
    models, tenant = platform.models, platform.tenant
    models.register_trained(tenant, NAME, "1.0.0", train(platform), "job")
    models.settings = models.settings.model_copy(update={"require_review": True})
    report = models.promote(tenant, NAME, "1.0.0", "alice")
    assert isinstance(report, GateReport)
    assert report.failed == ["governance"]
    assert "no approving governance review" in report.checks[1].detail
    models.registry.record_review(tenant, NAME, "1.0.0", "council", "approved")
    assert isinstance(models.promote(tenant, NAME, "1.0.0", "alice"), ModelVersion)


def test_operator_verdicts_on_model_alerts_become_the_error_stream(platform: Platform) -> None:
    """Alerts raised for a model version and resolved with verdicts feed label_errors in
    order (false positive = 1), which the drift check reports."""
    from trellis.alerts.feedback import Feedback, Verdict
    from trellis.core.types import AlertSeverity

    models, tenant, alerts = platform.models, platform.tenant, platform.alerts
    models.register_trained(tenant, NAME, "1.0.0", train(platform), "t")
    models.promote(tenant, NAME, "1.0.0", "t")
    verdicts = [Verdict.TRUE_POSITIVE, Verdict.FALSE_POSITIVE, Verdict.FALSE_POSITIVE]
    for i, verdict in enumerate(verdicts):
        at = now_ms() + i
        alerts.raise_alert(
            tenant=tenant,
            device="pump-0001",
            rule="anomaly",
            type="anomaly",
            severity=AlertSeverity.MINOR,
            message="model flagged",
            value=1.0,
            at_ms=at,
            model_version=f"{NAME}:1.0.0",
        )
        cleared = alerts.clear(
            tenant=tenant, rule="anomaly", device="pump-0001", value=0.0, at_ms=at
        )
        assert cleared is not None
        alerts.resolve(tenant, cleared.id, "op", Feedback(verdict))
    assert models.label_errors(tenant, NAME, "1.0.0") == [0, 1, 1]
    report = models.check_drift(tenant, NAME)
    assert report.concept.labels == 3
    assert report.concept.label_error_rate == 2 / 3


def test_canary_by_site_uses_the_device_registry(platform: Platform) -> None:
    """A canary at the pumps' site serves the challenger to them; at another site, the
    champion; a row's explicit site wins over the registry's."""
    models, tenant = platform.models, platform.tenant
    models.register_trained(tenant, NAME, "1.0.0", train(platform), "t")
    models.promote(tenant, NAME, "1.0.0", "t")
    models.register_trained(tenant, NAME, "1.1.0", train(platform, seed=5), "t")
    row = {"temperature": 60.0, "vibration": 2.0, "pressure": 4.0}
    rows = [PredictRow(row, device="pump-0001"), PredictRow(row, device="pump-0002", site="x")]
    canary = RoutingPolicy(RoutingMode.SPLIT, "1.1.0", percent=100, canary_sites=["plant-1"])
    models.set_routing(tenant, NAME, canary)
    served = [p.version for p in models.inference.predict(tenant, NAME, rows).predictions]
    assert served == ["1.1.0", "1.0.0"]
