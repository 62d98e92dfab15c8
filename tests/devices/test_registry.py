"""The device registry: database first, cache for the hot path, reloaded at start."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import PUMPS, ROOMS, TENANT
from trellis.core.errors import NotFoundError
from trellis.core.types import Device, DeviceStatus
from trellis.devices.registry import DeviceRegistry


def test_devices_survive_a_restart(registry: DeviceRegistry, metadata_engine: sa.Engine) -> None:
    """A new registry on the same database loads every device with all its fields."""
    registry.register(
        Device(
            TENANT,
            "pump-0003",
            "pump",
            name="Feed pump",
            site="plant-1",
            status=DeviceStatus.REVOKED,
            attributes={"serial": "A-1", "rated_kw": 7.5},
        )
    )
    reloaded = DeviceRegistry(metadata_engine)
    assert reloaded.find(TENANT) == registry.find(TENANT)
    device = reloaded.require(TENANT, "pump-0003")
    assert device.status is DeviceStatus.REVOKED
    assert device.attributes == {"serial": "A-1", "rated_kw": 7.5}
    assert device.created_ms > 0


def test_list_is_per_tenant_and_sorted(registry: DeviceRegistry) -> None:
    """list returns only the tenant's devices, ordered by id."""
    registry.register(Device("other", "pump-0009", "pump"))
    assert [d.id for d in registry.find(TENANT)] == sorted(PUMPS + ROOMS)
    assert [d.id for d in registry.find("other")] == ["pump-0009"]


def test_update_keeps_creation_time(registry: DeviceRegistry) -> None:
    """Registering an existing device updates it but keeps its created_ms."""
    before = registry.require(TENANT, PUMPS[0])
    after = registry.register(Device(TENANT, PUMPS[0], "pump", name="renamed", created_ms=1))
    assert after.name == "renamed"
    assert after.created_ms == before.created_ms


def test_unknown_model_is_refused(registry: DeviceRegistry) -> None:
    """A device whose model is not known is not registered."""
    with pytest.raises(ValueError, match="unknown device model 'boiler'"):
        registry.register(Device(TENANT, "boiler-1", "boiler"))
    assert registry.get(TENANT, "boiler-1") is None


def test_require_unknown_device_raises(registry: DeviceRegistry) -> None:
    """require names the missing device; get returns None."""
    assert registry.get(TENANT, "nope") is None
    with pytest.raises(NotFoundError, match="device 'nope' not found"):
        registry.require(TENANT, "nope")
