"""The alert lifecycle on the real metadata database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import NOW_MS, TENANT
from trellis.alerts import AlertService
from trellis.core.errors import NotFoundError
from trellis.core.types import AlertSeverity, AlertStatus


def _raise(service: AlertService, device: str = "pump-0001", value: float = 90.0):
    return service.raise_alert(
        tenant=TENANT,
        device=device,
        rule="hot",
        type="Hot",
        severity=AlertSeverity.MAJOR,
        message="temperature high",
        value=value,
        at_ms=NOW_MS,
    )


def test_repeat_trips_count_on_the_open_alert(metadata_engine: sa.Engine) -> None:
    """Raising the same rule for the same device twice keeps one alert with count 2."""
    service = AlertService(metadata_engine)
    first = _raise(service)
    second = _raise(service, value=95.0)
    assert second.id == first.id
    assert second.count == 2
    assert second.value == 95.0
    assert len(service.find(TENANT)) == 1


def test_clear_then_trip_again_reactivates(metadata_engine: sa.Engine) -> None:
    """A cleared but unresolved alert is reactivated, not duplicated."""
    service = AlertService(metadata_engine)
    alert = _raise(service)
    cleared = service.clear(
        tenant=TENANT, rule="hot", device="pump-0001", value=70.0, at_ms=NOW_MS + 5
    )
    assert cleared is not None
    assert cleared.status is AlertStatus.CLEARED
    again = _raise(service)
    assert (again.id, again.status, again.count) == (alert.id, AlertStatus.ACTIVE, 2)
    assert again.cleared_ms is None


def test_clear_without_active_alert_is_a_no_op(metadata_engine: sa.Engine) -> None:
    """Clearing when nothing is active returns None and writes nothing."""
    service = AlertService(metadata_engine)
    assert service.clear(tenant=TENANT, rule="hot", device="pump-0001", value=1.0, at_ms=1) is None
    assert service.find(TENANT) == []


def test_acknowledge_and_resolve(metadata_engine: sa.Engine) -> None:
    """Acknowledge records who and when; repeats change nothing and say who was first."""
    service = AlertService(metadata_engine)
    alert = _raise(service)
    acked = service.acknowledge(TENANT, alert.id, "ana")
    assert acked.changed
    assert (acked.alert.acknowledged, acked.alert.acknowledged_by) == (True, "ana")
    again = service.acknowledge(TENANT, alert.id, "bob")
    assert not again.changed
    assert again.alert.acknowledged_by == "ana"
    assert again.detail.startswith("already acknowledged by ana at ")
    resolved = service.resolve(TENANT, alert.id, "ana")
    assert resolved.changed
    assert resolved.alert.status is AlertStatus.RESOLVED
    assert resolved.alert.resolved_by == "ana"
    late_ack = service.acknowledge(TENANT, alert.id, "bob")
    assert (late_ack.changed, late_ack.alert.acknowledged_by) == (False, "ana")
    assert late_ack.detail.startswith("already resolved by ana at ")
    late_resolve = service.resolve(TENANT, alert.id, "bob")
    assert (late_resolve.changed, late_resolve.alert.resolved_by) == (False, "ana")
    assert late_resolve.detail.startswith("already resolved by ana")


def test_resolving_implies_acknowledging(metadata_engine: sa.Engine) -> None:
    """An alert resolved without an acknowledgement gets one at the same instant."""
    service = AlertService(metadata_engine)
    alert = service.resolve(TENANT, _raise(service).id, "ana").alert
    assert alert.acknowledged
    assert alert.acknowledged_ms == alert.resolved_ms


def test_a_trip_after_resolve_opens_a_new_alert(metadata_engine: sa.Engine) -> None:
    """Once resolved, the dedup key is free: the next trip is a new alert."""
    service = AlertService(metadata_engine)
    first = _raise(service)
    service.resolve(TENANT, first.id, "ana")
    second = _raise(service)
    assert second.id != first.id
    assert second.count == 1


def test_one_open_alert_per_key_is_enforced_by_the_database(metadata_engine: sa.Engine) -> None:
    """Even a write that bypasses the service cannot open a second alert for a key."""
    from trellis.store.metadata import alerts

    service = AlertService(metadata_engine)
    alert = _raise(service)
    row = {
        "tenant": TENANT,
        "device": "pump-0001",
        "rule": "hot",
        "type": "Hot",
        "severity": "major",
        "status": "active",
        "dedup_key": alert.dedup_key,
        "open_key": alert.dedup_key,
        "message": "m",
        "raised_ms": 1,
        "updated_ms": 1,
    }
    with pytest.raises(sa.exc.IntegrityError), metadata_engine.begin() as connection:
        connection.execute(alerts.insert().values(**row))


def test_unknown_alert_and_other_tenant(metadata_engine: sa.Engine) -> None:
    """An id of another tenant is as unknown as an id that never existed."""
    service = AlertService(metadata_engine)
    alert = _raise(service)
    with pytest.raises(NotFoundError):
        service.get("other", alert.id)
    with pytest.raises(NotFoundError):
        service.acknowledge(TENANT, 9999, "ana")
    assert service.find("other") == []


def test_filters_by_status_and_device(metadata_engine: sa.Engine) -> None:
    """find() filters by status set and device, newest first."""
    service = AlertService(metadata_engine)
    a = _raise(service, device="pump-0001")
    b = _raise(service, device="pump-0002")
    service.resolve(TENANT, a.id, "ana")
    assert [x.id for x in service.find(TENANT, statuses={AlertStatus.ACTIVE})] == [b.id]
    assert [x.id for x in service.find(TENANT, device="pump-0001")] == [a.id]
    assert service.open_keys() == [(TENANT, "hot", "pump-0002")]


def test_open_counts_group_open_alerts_by_device_and_severity(metadata_engine: sa.Engine) -> None:
    """Open (active or cleared) alerts are counted per device and severity; resolved are not."""
    service = AlertService(metadata_engine)
    _raise(service, device="pump-0001")
    cleared = _raise(service, device="pump-0002")
    service.clear(tenant=TENANT, rule="hot", device="pump-0002", value=1.0, at_ms=NOW_MS)
    service.resolve(TENANT, _raise(service, device="pump-0003").id, "ana")
    assert cleared.severity is AlertSeverity.MAJOR
    assert sorted(service.open_counts(TENANT)) == [
        ("pump-0001", AlertSeverity.MAJOR, 1),
        ("pump-0002", AlertSeverity.MAJOR, 1),
    ]
    assert service.open_counts("other") == []
