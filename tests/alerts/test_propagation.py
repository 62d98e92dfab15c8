"""Propagation up the asset tree: a site sees its pumps' alerts, an asset its devices'."""

from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import NOW_MS, TENANT
from trellis.alerts import AlertService
from trellis.alerts.propagation import registry_ancestors
from trellis.core.types import Alert, AlertSeverity, Device
from trellis.devices.registry import DeviceRegistry


def _raise(service: AlertService, device: str, rule: str = "hot") -> Alert:
    return service.raise_alert(
        tenant=TENANT,
        device=device,
        rule=rule,
        type="Hot",
        severity=AlertSeverity.MAJOR,
        message="temperature high",
        value=90.0,
        at_ms=NOW_MS,
    )


def _registered(engine: sa.Engine) -> DeviceRegistry:
    registry = DeviceRegistry(engine)
    registry.register(
        Device(TENANT, "pump-1", "pump", site="north", attributes={"asset": "station-3"})
    )
    registry.register(Device(TENANT, "pump-2", "pump", site="north"))
    registry.register(Device(TENANT, "room-1", "room", site="south"))
    registry.register(Device("other", "pump-9", "pump", site="north"))
    return registry


def test_registry_hierarchy_is_asset_then_site(metadata_engine: sa.Engine) -> None:
    """Today's hierarchy, nearest first: the device's asset attribute, then its site;
    an unknown device has no ancestors (its alerts stay visible by device only)."""
    _registered(metadata_engine)
    ancestors = registry_ancestors(metadata_engine)
    assert ancestors(TENANT, "pump-1") == ["station-3", "north"]
    assert ancestors(TENANT, "pump-2") == ["north"]
    assert ancestors(TENANT, "nobody") == []
    assert ancestors("other", "pump-1") == []


def test_every_node_above_a_device_sees_its_alerts(metadata_engine: sa.Engine) -> None:
    """``find(under=…)`` at an asset holds its devices' alerts, at a site every alert of
    the site (assets included); other sites and other tenants see none of them."""
    _registered(metadata_engine)
    service = AlertService(metadata_engine)
    pump1, pump2, room = (_raise(service, d) for d in ("pump-1", "pump-2", "room-1"))
    _raise(service, "pump-1")  # a repeat adds no second row anywhere
    foreign = service.raise_alert(
        tenant="other",
        device="pump-9",
        rule="hot",
        type="Hot",
        severity=AlertSeverity.MAJOR,
        message="m",
        value=1.0,
        at_ms=NOW_MS,
    )

    def seen(node: str, tenant: str = TENANT) -> list[int]:
        return sorted(a.id for a in service.find(tenant, under=node))

    assert seen("station-3") == [pump1.id]
    assert seen("north") == sorted([pump1.id, pump2.id])
    assert seen("south") == [room.id]
    assert seen("nowhere") == []
    assert seen("north", "other") == [foreign.id]


def test_a_deeper_hierarchy_plugs_in_as_one_function(metadata_engine: sa.Engine) -> None:
    """The service asks only ``ancestors(tenant, device)``: a Brick-style chain (zone,
    floor, building, site) propagates the alert to every level."""
    chain = {"ahu-1": ["zone-2", "floor-1", "building-a", "campus"]}
    service = AlertService(metadata_engine, ancestors=lambda _t, d: chain.get(d, []))
    alert = _raise(service, "ahu-1")
    for node in chain["ahu-1"]:
        assert [a.id for a in service.find(TENANT, under=node)] == [alert.id]
    assert service.find(TENANT, under="ahu-1") == []
