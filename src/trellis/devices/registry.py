"""The device registry: devices in the metadata database, cached for the hot path.

Ingest looks every message's device up here, thousands of times per second, so reads
are dictionary lookups; writes go to the database first and then to the cache, so
the cache never knows a device the database does not.
"""

from __future__ import annotations

import threading

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.core.types import Device
from trellis.devices.models import BUILTIN_MODELS, DeviceModel
from trellis.store.metadata import devices, row_dict

__all__ = ["DeviceRegistry"]


class DeviceRegistry:
    """Registered devices and the device models they refer to."""

    def __init__(self, engine: sa.Engine, models: dict[str, DeviceModel] | None = None) -> None:
        self._engine = engine
        self.models: dict[str, DeviceModel] = dict(models or BUILTIN_MODELS)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Device] = {}
        with engine.connect() as connection:
            for row in connection.execute(sa.select(devices)).mappings():
                device = _device_from_row(row)
                self._cache[(device.tenant, device.id)] = device

    def get(self, tenant: str, device_id: str) -> Device | None:
        """The device, or ``None`` when it is not registered (hot path: no I/O)."""
        return self._cache.get((tenant, device_id))

    def require(self, tenant: str, device_id: str) -> Device:
        """The device, or :class:`NotFoundError`."""
        device = self.get(tenant, device_id)
        if device is None:
            raise NotFoundError("device", device_id)
        return device

    def find(self, tenant: str) -> list[Device]:
        """The tenant's devices, ordered by id."""
        return sorted(
            (device for (t, _), device in self._cache.items() if t == tenant),
            key=lambda device: device.id,
        )

    def register(self, device: Device) -> Device:
        """Create or update a device; its model must be known."""
        if device.model not in self.models:
            raise ValueError(f"unknown device model {device.model!r}; known: {sorted(self.models)}")
        existing = self.get(device.tenant, device.id)
        created = existing.created_ms if existing else (device.created_ms or now_ms())
        values = {
            "model": device.model,
            "name": device.name,
            "site": device.site,
            "status": device.status.value,
            "attributes": device.attributes,
            "created_ms": created,
        }
        with self._lock, self._engine.begin() as connection:
            if existing is None:
                connection.execute(
                    devices.insert().values(tenant=device.tenant, id=device.id, **values)
                )
            else:
                connection.execute(
                    devices.update()
                    .where(devices.c.tenant == device.tenant, devices.c.id == device.id)
                    .values(**values)
                )
            stored = msgspec.structs.replace(device, created_ms=created)
            self._cache[(device.tenant, device.id)] = stored
        return stored


def _device_from_row(row: sa.RowMapping) -> Device:
    return msgspec.convert(row_dict(row), Device)
