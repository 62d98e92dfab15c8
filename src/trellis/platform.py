"""The composition root: the one place that builds Trellis from its settings.

Nothing else reads the configuration or constructs services; tests build a
:class:`Platform` from :class:`~trellis.core.config.Settings` the same way the CLI
does, so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from trellis.alerts.escalation import Escalator
from trellis.alerts.notify import Channel, EmailChannel, Notifier, WebhookChannel
from trellis.alerts.propagation import registry_ancestors
from trellis.alerts.service import AlertService
from trellis.bus.live import LiveHub
from trellis.bus.memory import InProcessBus
from trellis.core.clock import now_ms
from trellis.core.config import Settings
from trellis.core.errors import NotFoundError
from trellis.core.types import AlertSeverity, Device, RawMessage, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.devices.twins import Twin, TwinStore
from trellis.ingest.archive import Archive, run_retention
from trellis.ingest.decode import telemetry_topic
from trellis.ingest.pipeline import IngestPipeline
from trellis.ingest.quarantine import Quarantine
from trellis.lineage.graph import LineageWalker
from trellis.lineage.openlineage import Dataset, LineageEmitter, LineageRun
from trellis.ml.service import ModelService
from trellis.protocols.mqtt import (
    MosquittoProcess,
    MqttGateway,
    MqttPublisher,
    mosquitto_binary,
    parse_broker_url,
)
from trellis.protocols.mqtt.fleet import publish_fleet
from trellis.rules.actions import Effects
from trellis.rules.engine import RuleEngine
from trellis.rules.flowstore import FlowStore
from trellis.rules.store import RuleStore
from trellis.semantic.store import SemanticModel
from trellis.sim.demo import DEMO_RULES
from trellis.sim.fleet import Fleet, run_realtime
from trellis.store.base import TimeSeriesStore
from trellis.store.factory import open_timeseries
from trellis.store.maintenance import StorageMaintenance
from trellis.store.metadata import open_metadata
from trellis.store.retention import StorageBudget

__all__ = ["Platform", "open_storage"]

log = logging.getLogger(__name__)
_S = TypeVar("_S")


class Platform:
    """Every service of one embedded Trellis process, wired together.

    Constructing it opens (and migrates) the databases; :meth:`running` starts the
    pipeline, the rule engine and the live hub, and stops them in the order that
    loses nothing: sources first, then ingest drains, then the bus drains.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tenant = settings.tenant
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = open_metadata(settings.metadata_url)
        try:
            self.store: TimeSeriesStore = open_storage(settings)
        except BaseException:
            self.engine.dispose()
            raise
        self.registry = DeviceRegistry(self.engine)
        self.quarantine = Quarantine(self.engine)
        self.semantic = SemanticModel(self.engine)
        self._registry_ancestors = registry_ancestors(self.engine)
        self.alerts = AlertService(
            self.engine,
            ancestors=self._alert_scopes,
            root_causes=settings.alerts.root_causes,
            storm_limit=settings.alerts.storm_limit,
            storm_window_ms=int(settings.alerts.storm_window_s * 1000),
        )
        self.rules = RuleStore(self.engine)
        self.storage = StorageMaintenance(self.store, settings.storage, self.registry.every)
        self.models = ModelService(
            self.engine, settings.ml, settings.data_dir, self.alerts, self.registry, self.store
        )
        self.flows = FlowStore(self.engine, self.rules)
        self.registry.listeners.append(self._place_device)
        self.archive = Archive(self.engine, level=settings.fabric.archive_level)
        self.lineage = LineageEmitter.from_settings(settings.fabric)
        self.lineage_walker = LineageWalker(
            self.engine, self.store, self.archive, self.registry, self.alerts
        )
        self.twins = TwinStore(self.engine)
        self.fleet: Fleet | None = None
        self.notifier: Notifier | None = None
        self._bus: InProcessBus[Reading] | None = None
        self._pipeline: IngestPipeline | None = None
        self._engine: RuleEngine | None = None
        self._live: LiveHub | None = None
        self._mqtt: MqttGateway | None = None

    @property
    def bus(self) -> InProcessBus[Reading]:
        """The bus; only while running."""
        return _running(self._bus)

    @property
    def pipeline(self) -> IngestPipeline:
        """The ingest pipeline; only while running."""
        return _running(self._pipeline)

    @property
    def rule_engine(self) -> RuleEngine:
        """The rule engine; only while running."""
        return _running(self._engine)

    @property
    def live(self) -> LiveHub:
        """The live hub; only while running."""
        return _running(self._live)

    @property
    def mqtt(self) -> MqttGateway | None:
        """The MQTT 5 gateway, when this process talks to a broker."""
        return self._mqtt

    def _start_broker(self, simulate: bool) -> MosquittoProcess | None:
        """A private Mosquitto for the demo, when no broker is configured and one exists."""
        mqtt = self.settings.mqtt
        if mqtt.url is not None or not simulate or not mqtt.embedded_broker:
            return None
        if mosquitto_binary() is None:
            log.info("no mosquitto on the PATH: the simulated fleet feeds ingest in process")
            return None
        broker = MosquittoProcess(self.settings.data_dir / "mosquitto")
        broker.start()
        log.info("started mosquitto on %s for the simulated fleet", broker.url)
        return broker

    def seed_demo(self) -> Fleet:
        """Register the simulated fleet and, when the tenant has none, the demo rules."""
        fleet = Fleet(self.settings.sim, self.tenant)
        for device in fleet.devices():
            self.registry.register(device)
        if not self.rules.find(self.tenant):
            for rule in DEMO_RULES:
                self.rules.put(self.tenant, rule)
        self.fleet = fleet
        return fleet

    @contextlib.asynccontextmanager
    async def running(self, *, simulate: bool = False) -> AsyncIterator[Platform]:
        """Run the services for the duration of the ``async with`` block."""
        bus: InProcessBus[Reading] = InProcessBus(self.settings.bus.subscriber_queue)
        self._bus = bus
        self._pipeline = IngestPipeline(
            self.store,
            self.registry,
            self.quarantine,
            bus,
            self.settings.ingest,
            self.archive if self.settings.fabric.archive else None,
        )
        self._engine = RuleEngine(
            bus.subscribe("rules"),
            self.rules,
            self.alerts,
            self.registry,
            checkpoint_s=self.settings.rules.checkpoint_s,
            tick_s=self.settings.rules.tick_s,
            semantic=self.semantic,
            effects=self._effects(),
            model_recheck_s=self.settings.rules.model_recheck_s,
        )
        self._live = LiveHub(bus.subscribe("live"))
        notifier = Notifier(
            self.engine,
            _channels(self.settings),
            attempts=self.settings.alerts.notify_attempts,
            backoff_s=self.settings.alerts.notify_backoff_s,
        )
        self.notifier = notifier
        self.alerts.on_notify = notifier.submit
        escalator = Escalator(
            self.alerts,
            after_s=self.settings.alerts.escalate_after_s,
            every_s=self.settings.alerts.escalation_check_s,
        )
        fleet = await asyncio.to_thread(self.seed_demo) if simulate else None
        broker = await asyncio.to_thread(self._start_broker, simulate)
        url = self.settings.mqtt.url or (broker.url if broker is not None else None)
        publisher: MqttPublisher | None = None
        ingest_run = self._ingest_run(url)
        await asyncio.to_thread(self.lineage.emit, "START", ingest_run)
        outcome = "FAIL"
        try:
            async with asyncio.TaskGroup() as tasks:
                ingest = tasks.create_task(self._pipeline.run(), name="trellis.ingest")
                tasks.create_task(self._engine.run(), name="trellis.rules")
                tasks.create_task(self._live.run(), name="trellis.live")
                tasks.create_task(escalator.run(), name="trellis.alerts.escalation")
                tasks.create_task(notifier.run(), name="trellis.alerts.notify")
                models = tasks.create_task(self.models.run(), name="trellis.ml")
                gateway = None
                if url is not None:
                    address = parse_broker_url(url, self.settings.mqtt)
                    self._mqtt = MqttGateway(
                        address, self.settings.mqtt, self._pipeline, tenant=self.tenant
                    )
                    self._mqtt.on_state = self.twins.report
                    gateway = tasks.create_task(self._mqtt.run(), name="trellis.mqtt")
                housekeeping = tasks.create_task(
                    self.storage.run(self._budget_alert), name="trellis.storage"
                )
                archive_retention = tasks.create_task(
                    run_retention(
                        self.archive,
                        days=self.settings.fabric.archive_days,
                        every_s=self.settings.storage.retention_interval_s,
                    ),
                    name="trellis.archive.retention",
                )
                source = None
                if fleet is not None and self._mqtt is not None:
                    publisher = MqttPublisher(address, f"trellis-sim-{self.tenant}")
                    await asyncio.to_thread(publisher.connect)
                    source = tasks.create_task(
                        publish_fleet(fleet, publisher, self.settings.sim.rate_hz),
                        name="trellis.sim",
                    )
                elif fleet is not None:
                    source = tasks.create_task(
                        run_realtime(fleet, self._pipeline.submit, self.settings.sim.rate_hz),
                        name="trellis.sim",
                    )
                try:
                    yield self
                finally:
                    # Sources first (unacknowledged MQTT messages stay with the broker),
                    # then ingest drains, then the bus.
                    for task in (source, gateway):
                        if task is not None:
                            task.cancel()
                    housekeeping.cancel()
                    archive_retention.cancel()
                    await self._pipeline.close()
                    await ingest
                    bus.close()
                    escalator.stop()
                    models.cancel()
                    self.alerts.on_notify = None
                    notifier.stop()
            outcome = "COMPLETE"
        finally:
            await asyncio.to_thread(self.lineage.emit, outcome, ingest_run)
            self._bus = self._pipeline = self._engine = self._live = None
            self._mqtt = None
            if publisher is not None:
                await asyncio.to_thread(publisher.close)
            if broker is not None:
                await asyncio.to_thread(broker.stop)
            log.info("trellis stopped")

    def _alert_scopes(self, tenant: str, device: str) -> list[str]:
        """Where an alert of ``device`` is visible: the semantic model's nodes above its
        points (nearest first), then what the registry records (asset, site)."""
        chain = self.semantic.ancestors(tenant, device)
        chain += [n for n in self._registry_ancestors(tenant, device) if n not in chain]
        return chain

    def _place_device(self, device: Device) -> None:
        """A registered device's typed properties become points of the semantic model;
        the rule engine then re-resolves its point selectors (device tags may differ too)."""
        model = self.registry.models.get(device.model)
        if model is not None:
            self.semantic.place_device(device, model)
        if self._engine is not None:
            self._engine.invalidate(device.tenant)

    def _ingest_run(self, broker_url: str | None) -> LineageRun:
        """The OpenLineage run of this process's ingest pipeline: what it reads and writes."""
        source = f"mqtt://{broker_url.split('://', 1)[-1]}" if broker_url else "trellis.ingest"
        outputs = [Dataset("trellis.timeseries", f"{self.tenant}/readings")]
        if self.settings.fabric.archive:
            outputs.append(Dataset("trellis.archive", f"{self.tenant}/messages"))
        return LineageRun(
            str(uuid.uuid4()),
            "ingest",
            [Dataset(source, "trellis/v1/+/+/telemetry")],
            outputs,
        )

    # -- what rule actions reach (trellis.rules.actions.Effects) ---------------------

    def _effects(self) -> Effects:
        return Effects(
            known_device=lambda tenant, device: self.registry.get(tenant, device) is not None,
            command=self._command,
            desired=self._desired_action,
            emit=self.emit_metric,
            predict=self._predict_rows,
            features=self.model_features,
        )

    async def _command(
        self, tenant: str, device: str, name: str, args: dict[str, Any], timeout_s: float
    ) -> tuple[bool, str, Any]:
        if self._mqtt is None:
            return False, "device commands need an MQTT broker; this process talks to none", None
        result = await self._mqtt.command(tenant, device, name, args, timeout_s)
        return result.outcome == "answered", result.reason or "", result.result

    async def set_desired(self, tenant: str, device: str, patch: Mapping[str, Any]) -> Twin:
        """Merge ``patch`` into the device's desired state and send it (when a broker is
        connected; the twin shows what the device has not applied yet either way)."""
        twin = await asyncio.to_thread(self.twins.set_desired, tenant, device, patch)
        if self._mqtt is not None:
            self._mqtt.send_desired(tenant, device, twin.desired_version, twin.desired)
        return twin

    async def _desired_action(self, tenant: str, device: str, state: dict[str, Any]) -> None:
        await self.set_desired(tenant, device, state)
        if self._mqtt is None:
            raise RuntimeError("desired state recorded but not sent: no MQTT broker")

    async def emit_metric(
        self, tenant: str, device: str, metric: str, ts: int, value: float, origin: str
    ) -> str | None:
        """Feed a derived reading through ingest (contract-checked, stored, on the bus);
        the quarantine reason, or ``None`` when it was stored."""
        raw = RawMessage(
            id=f"derived-{secrets.token_hex(8)}",
            source="rules",
            topic=telemetry_topic(tenant, device),
            payload=msgspec.json.encode({"ts": ts, "values": {metric: value}}),
            received_ms=now_ms(),
            properties={"origin": origin},
        )
        result = await self.pipeline.submit_and_wait(raw)
        return (result.reason or "quarantined") if result.quarantined else None

    def model_features(self, tenant: str, name: str) -> tuple[str, list[str]] | None:
        """The device model and features the production version of ``name`` reads."""
        try:
            summary = self.models.registry.model(tenant, name)
            if summary.production is None:
                return None
            version = self.models.registry.get(tenant, name, summary.production)
        except NotFoundError:
            return None
        return version.signature.device_model, version.signature.names

    def _predict_rows(
        self, tenant: str, name: str, rows: Sequence[tuple[str, Mapping[str, float]]]
    ) -> list[Mapping[str, Any]]:
        from trellis.ml.inference import PredictRow

        result = self.models.inference.predict_or(
            tenant,
            name,
            [PredictRow(dict(features), device=device) for device, features in rows],
            fallback=lambda _row: {},
        )
        return [prediction.outputs for prediction in result.predictions]

    def _budget_alert(self, budget: StorageBudget) -> None:
        """Raise an alert while the disk is predicted full within the warning horizon."""
        at = now_ms()
        if not budget.alert:
            self.alerts.clear(
                tenant=self.tenant, rule="storage-budget", device="storage", value=None, at_ms=at
            )
            return
        self.alerts.raise_alert(
            tenant=self.tenant,
            device="storage",
            rule="storage-budget",
            type="storage_full_soon",
            severity=AlertSeverity.MAJOR,
            message=f"storage is predicted full in {budget.days_until_full} days "
            f"({budget.growth_bytes_per_day} bytes/day); shorten retention or add disk",
            value=budget.days_until_full,
            at_ms=at,
        )

    def close(self) -> None:
        """Close the databases (after committing the operators' actions still queued)."""
        self.alerts.close()
        self.store.close()
        self.engine.dispose()


def _channels(settings: Settings) -> list[Channel]:
    """The notification channels the settings name."""
    alerts = settings.alerts
    channels: list[Channel] = [
        WebhookChannel(hook.url, timeout_s=hook.timeout_s, headers=hook.headers)
        for hook in alerts.webhooks
    ]
    if alerts.email is not None:
        mail = alerts.email
        channels.append(
            EmailChannel(
                host=mail.host,
                port=mail.port,
                sender=mail.sender,
                recipients=mail.recipients,
                starttls=mail.starttls,
                username=mail.username,
                password=mail.password,
            )
        )
    return channels


def open_storage(settings: Settings) -> TimeSeriesStore:
    """The time-series store ``storage.url`` names (SQLite by default, or PostgreSQL)."""
    storage = settings.storage
    return open_timeseries(
        settings.timeseries_url,
        pg_schema=storage.pg_schema,
        pool_size=storage.pool_size,
        partitions_ahead=storage.partitions_ahead,
    )


def _running(service: _S | None) -> _S:
    if service is None:
        raise RuntimeError("the platform is not running; use `async with platform.running()`")
    return service
