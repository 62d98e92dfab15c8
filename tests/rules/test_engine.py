"""The rule engine as a bus subscriber, with a real metadata database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tests.helpers import NOW_MS, TENANT, run
from trellis.alerts import AlertService
from trellis.bus import InProcessBus
from trellis.core.types import Alert, AlertSeverity, Reading
from trellis.devices import DeviceRegistry
from trellis.rules import RuleEngine, RuleStore, ThresholdRule

RULE = ThresholdRule(
    id="hot", metric="temperature", op=">", threshold=80, severity=AlertSeverity.MAJOR, model="pump"
)


class FlakyAlerts(AlertService):
    """Fails the first ``failures`` writes the way a locked SQLite file does."""

    def __init__(self, engine: sa.Engine, failures: int) -> None:
        super().__init__(engine)
        self.failures = failures

    def raise_alert(self, **kwargs: object) -> Alert:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return super().raise_alert(**kwargs)  # type: ignore[arg-type]


def _run_engine(
    engine: sa.Engine,
    registry: DeviceRegistry,
    alerts: AlertService,
    batches: Sequence[list[Reading]],
) -> RuleEngine:
    rules = RuleStore(engine)
    rules.put(TENANT, RULE)

    async def scenario() -> RuleEngine:
        bus: InProcessBus[Reading] = InProcessBus(4)
        rule_engine = RuleEngine(bus.subscribe("rules"), rules, alerts, registry)
        task = asyncio.create_task(rule_engine.run())
        for batch in batches:
            await bus.publish(batch)
        bus.close()
        await task
        return rule_engine

    return run(scenario())


def test_a_failing_alert_write_is_retried_and_counted_once(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """Two transient write failures delay the alert; it still exists once, count 1."""
    alerts = FlakyAlerts(metadata_engine, failures=2)
    batch = [Reading(TENANT, "pump-0001", "temperature", NOW_MS, 95.0)]
    engine = _run_engine(metadata_engine, registry, alerts, [batch])
    assert engine.transitions == 1
    assert alerts.failures == 0
    [alert] = alerts.find(TENANT)
    assert (alert.device, alert.count) == ("pump-0001", 1)


def test_rooms_do_not_trip_pump_rules_and_tenants_are_apart(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """A pump rule ignores rooms, and another tenant's pump with the same id."""
    alerts = AlertService(metadata_engine)
    batch = [
        Reading(TENANT, "room-0001", "temperature", NOW_MS, 95.0),
        Reading("other", "pump-0001", "temperature", NOW_MS, 95.0),
    ]
    _run_engine(metadata_engine, registry, alerts, [batch])
    assert alerts.find(TENANT) == []
    assert alerts.find("other") == []
