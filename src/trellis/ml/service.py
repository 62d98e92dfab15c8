"""The model service: registry, artifacts, inference, gate, drift and carbon together.

This is what the API, the CLI and the platform call. Constructing it imports none of
the ML stack, so a platform without ``trellis-aiot[ml]`` starts, lists models, and
answers a model feature with :class:`~trellis.ml.errors.MissingExtraError`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.alerts.service import AlertService
from trellis.core.clock import now_ms
from trellis.core.config import MlSettings
from trellis.core.types import AlertSeverity
from trellis.devices.registry import DeviceRegistry
from trellis.ml._extra import require_ml
from trellis.ml.artifacts import LocalArtifactStore, inspect_onnx
from trellis.ml.carbon import CarbonModel, Footprint
from trellis.ml.drift import DriftMonitor, DriftReport
from trellis.ml.gate import GatePolicy, GateReport, run_gate
from trellis.ml.inference import InferenceService
from trellis.ml.predlog import PredictionLog
from trellis.ml.registry import ModelRegistry, ModelVersion, Stage
from trellis.ml.routing import RoutingPolicy
from trellis.ml.sessions import SessionCache
from trellis.ml.signature import Signature
from trellis.ml.training import TrainedModel, feature_rows
from trellis.store.base import TimeSeriesStore
from trellis.store.metadata import alert_labels, alerts, ml_prediction_batches

__all__ = ["ModelService", "VersionStats"]

log = logging.getLogger(__name__)


class VersionStats(msgspec.Struct, frozen=True):
    """Served traffic of one version: counts by role, latency, score, footprint."""

    version: str
    served: int
    shadow: int
    mean_latency_us: float
    mean_score: float | None
    footprint: Footprint


class ModelService:
    """Every model operation of one platform."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: MlSettings,
        data_dir: Path,
        alerts: AlertService,
        devices: DeviceRegistry,
        store: TimeSeriesStore,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._alerts = alerts
        self._devices = devices
        self._store = store
        self.registry = ModelRegistry(engine)
        self.artifacts = LocalArtifactStore(settings.artifact_dir or data_dir / "artifacts")
        self.sessions = SessionCache(self.artifacts, settings.sessions)
        self.log = PredictionLog(engine, settings.log_max_pending)
        self.drift = DriftMonitor(settings.drift_window, settings.psi_threshold, settings.ks_pvalue)
        self.carbon = CarbonModel(settings.cpu_power_w, settings.grid_gco2e_per_kwh)
        self._device_cache: dict[tuple[str, str], tuple[str, str] | None] = {}
        self.inference = InferenceService(
            self.registry,
            self.sessions,
            self.log,
            self.drift,
            self._device,
            on_failure=self._failed,
        )

    def _device(self, tenant: str, device_id: str) -> tuple[str, str] | None:
        key = (tenant, device_id)
        if key not in self._device_cache:
            if len(self._device_cache) > 100_000:
                self._device_cache.clear()
            device = self._devices.get(tenant, device_id)
            self._device_cache[key] = None if device is None else (device.model, device.site)
        return self._device_cache[key]

    def _failed(self, tenant: str, version: ModelVersion, reason: str) -> None:
        log.warning("model %s %s failed: %s", version.name, version.version, reason)
        self._alerts.raise_alert(
            tenant=tenant,
            device=f"model:{version.name}",
            rule=f"ml-failure:{version.name}",
            type="model_failure",
            severity=AlertSeverity.MAJOR,
            message=f"model {version.name} {version.version} failed to predict: {reason}",
            value=None,
            at_ms=now_ms(),
            model_version=f"{version.name}:{version.version}",
        )

    # -- registry --------------------------------------------------------------------

    def register(
        self,
        tenant: str,
        name: str,
        version: str,
        data: bytes,
        signature: Signature,
        registered_by: str,
        **evidence: Any,
    ) -> ModelVersion:
        """Check the file against the signature, store it by hash, register the version."""
        inspect_onnx(data, signature)
        sha256 = self.artifacts.put(data)
        return self.registry.register(
            tenant,
            name,
            version,
            sha256=sha256,
            signature=signature,
            registered_by=registered_by,
            **evidence,
        )

    def register_trained(
        self, tenant: str, name: str, version: str, trained: TrainedModel, registered_by: str
    ) -> ModelVersion:
        """Register a model a training job produced, with its evidence."""
        return self.register(
            tenant,
            name,
            version,
            trained.onnx,
            trained.signature,
            registered_by,
            metrics=trained.metrics,
            card=trained.card,
            lineage=trained.lineage,
            reference=trained.reference,
        )

    def set_routing(self, tenant: str, name: str, policy: RoutingPolicy) -> RoutingPolicy:
        """Replace the routing policy and apply it at once in this process."""
        done = self.registry.set_routing(tenant, name, policy)
        self.inference.invalidate(tenant, name)
        return done

    def promote(
        self, tenant: str, name: str, version: str, actor: str, stage: Stage = Stage.PRODUCTION
    ) -> GateReport | ModelVersion:
        """Move a version to ``stage``; entering production runs the validation gate
        first, under the promotion lock, and returns the failed report if it fails."""
        if stage is not Stage.PRODUCTION:
            moved = self.registry.set_stage(tenant, name, version, stage, actor)
            self.inference.invalidate(tenant, name)
            return moved
        require_ml()
        with self.registry.promotion_lock(tenant, name):
            candidate = self.registry.get(tenant, name, version)
            champion = self.registry.production(tenant, name)
            if champion is not None and champion.version == version:
                return candidate
            report = run_gate(
                candidate, champion, self.holdout(tenant, candidate), self.sessions, self._policy()
            )
            if not report.passed:
                return report
            promoted = self.registry.set_stage(
                tenant,
                name,
                version,
                Stage.PRODUCTION,
                actor,
                {"gate": msgspec.to_builtins(report)},
            )
            routing = self.registry.model(tenant, name).routing
            if routing.challenger == version:
                self.registry.set_routing(tenant, name, RoutingPolicy())
            self.inference.invalidate(tenant, name)
            return promoted

    def rollback(self, tenant: str, name: str, actor: str) -> ModelVersion:
        """Restore the previous champion; its routing is reset to champion-only."""
        with self.registry.promotion_lock(tenant, name):
            restored = self.registry.rollback(tenant, name, actor)
            self.registry.set_routing(tenant, name, RoutingPolicy())
        self.inference.invalidate(tenant, name)
        return restored

    def _policy(self) -> GatePolicy:
        s = self.settings
        return GatePolicy(
            max_alarm_rate=s.max_alarm_rate,
            tolerance=s.alarm_tolerance,
            latency_budget_ms=s.latency_budget_ms,
            require_review=s.require_review,
        )

    def holdout(self, tenant: str, version: ModelVersion) -> list[list[float]]:
        """The newest ``holdout_s`` of stored data for the version's device model."""
        end = now_ms() + 1
        start = end - int(self.settings.holdout_s * 1000)
        devices = [
            d.id for d in self._devices.find(tenant) if d.model == version.signature.device_model
        ]
        return feature_rows(self._store, tenant, devices, version.signature.names, start, end)

    # -- drift -----------------------------------------------------------------------

    def label_errors(self, tenant: str, name: str, version: str) -> list[int]:
        """Operator verdicts on this version's alerts as an error stream (1 = false alarm)."""
        tag = f"{name}:{version}"
        with self._engine.connect() as c:
            verdicts = c.execute(
                sa.select(alert_labels.c.verdict)
                .where(alert_labels.c.tenant == tenant, alert_labels.c.model_version == tag)
                .order_by(alert_labels.c.labelled_ms)
            ).scalars()
            return [1 if v == "false_positive" else 0 for v in verdicts]

    def check_drift(
        self, tenant: str, name: str, version: str | None = None, *, alert: bool = True
    ) -> DriftReport:
        """The drift of a version (the champion by default); a drifted report raises an
        alert (unless ``alert`` is false) whose message names the features and PSI."""
        require_ml()
        target = (
            self.registry.get(tenant, name, version)
            if version is not None
            else self.registry.production(tenant, name)
        )
        if target is None:
            raise self._no_champion(name)
        report = self.drift.check(
            tenant,
            name,
            target.version,
            target.signature.names,
            self.registry.reference(tenant, name, target.version),
            self.label_errors(tenant, name, target.version),
        )
        if report.drifted and alert:
            worst = sorted((f for f in report.features if f.drifted), key=lambda f: -f.psi)
            what = ", ".join(f"{f.feature} PSI {f.psi:.2f} KS {f.ks:.2f}" for f in worst)
            if report.concept.labels_drift:
                what = (what + "; " if what else "") + "operator-labelled error rate changed"
            self._alerts.raise_alert(
                tenant=tenant,
                device=f"model:{name}",
                rule=f"ml-drift:{name}",
                type="model_drift",
                severity=AlertSeverity.WARNING,
                message=f"model {name} {target.version} sees drift: {what}",
                value=worst[0].psi if worst else None,
                at_ms=now_ms(),
                metric=worst[0].feature if worst else None,
                model_version=f"{name}:{target.version}",
            )
        return report

    def _no_champion(self, name: str) -> Exception:
        from trellis.core.errors import ConflictError

        return ConflictError(f"model {name} has no version in production")

    async def run(self) -> None:
        """Flush the prediction log and check drift of every champion, periodically."""
        flush_s = self.settings.log_flush_s
        since_drift = 0.0
        try:
            while True:
                await asyncio.sleep(flush_s)
                await asyncio.to_thread(self.log.flush)
                since_drift += flush_s
                if since_drift >= self.settings.drift_check_s:
                    since_drift = 0.0
                    await asyncio.to_thread(self._check_all)
        finally:
            await asyncio.to_thread(self.log.flush)

    def _check_all(self) -> None:
        from trellis.ml.errors import MissingExtraError

        for tenant in self.drift.tenants():
            for model in self.registry.models(tenant):
                if model.production is None:
                    continue
                try:
                    self.check_drift(tenant, model.name)
                except MissingExtraError:
                    return

    # -- traffic and carbon ----------------------------------------------------------

    def stats(self, tenant: str, name: str, since_ms: int = 0) -> list[VersionStats]:
        """Per version: predictions served and shadowed, latency, score, footprint."""
        self.log.flush()
        p = ml_prediction_batches.c
        with self._engine.connect() as c:
            rows = c.execute(
                sa.select(
                    p.version,
                    sa.func.sum(sa.case((p.role == "served", p.n), else_=0)),
                    sa.func.sum(sa.case((p.role == "shadow", p.n), else_=0)),
                    sa.func.sum(p.latency_us),
                    sa.func.sum(p.score_sum),
                    sa.func.sum(sa.case((p.score_sum.is_not(None), p.n), else_=0)),
                    sa.func.sum(p.cpu_us),
                )
                .where(p.tenant == tenant, p.name == name, p.at_ms >= since_ms)
                .group_by(p.version)
                .order_by(p.version)
            ).all()
        out = []
        for version, served, shadow, latency, score_sum, scored, cpu in rows:
            total = int(served or 0) + int(shadow or 0)
            out.append(
                VersionStats(
                    version=version,
                    served=int(served or 0),
                    shadow=int(shadow or 0),
                    mean_latency_us=float(latency or 0) / max(total, 1),
                    mean_score=float(score_sum) / scored if scored else None,
                    footprint=self.carbon.footprint(total, int(cpu or 0)),
                )
            )
        return out

    def score_series(
        self, tenant: str, name: str, since_ms: int, bucket_ms: int = 60_000
    ) -> dict[str, list[tuple[int, float]]]:
        """Mean score per version per time bucket: the champion-vs-challenger chart."""
        self.log.flush()
        p = ml_prediction_batches.c
        bucket = (p.at_ms / bucket_ms).cast(sa.BigInteger) * bucket_ms
        with self._engine.connect() as c:
            rows = c.execute(
                sa.select(p.version, bucket, sa.func.sum(p.score_sum), sa.func.sum(p.n))
                .where(
                    p.tenant == tenant,
                    p.name == name,
                    p.at_ms >= since_ms,
                    p.score_sum.is_not(None),
                )
                .group_by(p.version, bucket)
                .order_by(bucket)
            ).all()
        series: dict[str, list[tuple[int, float]]] = {}
        for version, start, total, n in rows:
            series.setdefault(version, []).append((int(start), float(total) / int(n)))
        return series

    def alerts_of(self, tenant: str, name: str) -> list[int]:
        """Ids of the model's drift and failure alerts (newest first)."""
        with self._engine.connect() as c:
            return list(
                c.execute(
                    sa.select(alerts.c.id)
                    .where(alerts.c.tenant == tenant, alerts.c.device == f"model:{name}")
                    .order_by(alerts.c.id.desc())
                ).scalars()
            )
