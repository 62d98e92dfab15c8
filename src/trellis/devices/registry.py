"""The device registry: devices in the metadata database, cached for the hot path.

Ingest looks every message's device up here, thousands of times per second, so reads
are dictionary lookups; writes go to the database first and then to the cache, so
the cache never knows a device the database does not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgspec
import sqlalchemy as sa

from trellis.contracts.compiled import compile_model
from trellis.core.clock import now_ms
from trellis.core.errors import ConflictError, NotFoundError
from trellis.core.types import Device
from trellis.devices.models import BUILTIN_MODELS, DeviceModel
from trellis.store.metadata import device_models, devices, row_dict

__all__ = ["DeviceRegistry"]


class DeviceRegistry:
    """Registered devices and the device models they refer to."""

    def __init__(self, engine: sa.Engine, models: dict[str, DeviceModel] | None = None) -> None:
        self._engine = engine
        self.models: dict[str, DeviceModel] = dict(models or BUILTIN_MODELS)
        self._lock = threading.Lock()
        #: Called with each device after it is registered, and with every device of a
        #: model after a new version of it is imported (the semantic model places them).
        self.listeners: list[Callable[[Device], None]] = []
        self._cache: dict[tuple[str, str], Device] = {}
        self._versions: dict[str, dict[str, DeviceModel]] = {
            name: {model.version: model} for name, model in self.models.items()
        }
        with engine.connect() as connection:
            for row in connection.execute(sa.select(devices)).mappings():
                device = _device_from_row(row)
                self._cache[(device.tenant, device.id)] = device
            query = sa.select(device_models).order_by(device_models.c.created_ms)
            for row in connection.execute(query).mappings():
                model = msgspec.convert(row["definition"], DeviceModel)
                self._versions.setdefault(model.name, {})[model.version] = model
                self.models[model.name] = model

    def model_versions(self, name: str) -> list[DeviceModel]:
        """Every known version of a model, oldest import first; the last one is in use."""
        versions = self._versions.get(name)
        if not versions:
            raise NotFoundError("device model", name)
        return list(versions.values())

    def put_model(self, model: DeviceModel, fmt: str) -> DeviceModel:
        """Store a model version and make it the one its devices are validated against.

        A version is immutable: importing the same version again with a different
        definition is a :class:`ConflictError` (bump the version instead).
        """
        compile_model(model)  # refuses unknown units and contradicting contracts
        existing = self._versions.get(model.name, {}).get(model.version)
        if existing is not None:
            if msgspec.json.encode(existing) != msgspec.json.encode(model):
                raise ConflictError(
                    f"device model {model.key} exists with another definition; "
                    "a model version is immutable, import it as a new version"
                )
            return existing
        with self._lock, self._engine.begin() as connection:
            connection.execute(
                device_models.insert().values(
                    name=model.name,
                    version=model.version,
                    format=fmt,
                    definition=msgspec.to_builtins(model),
                    created_ms=now_ms(),
                )
            )
            self._versions.setdefault(model.name, {})[model.version] = model
            self.models[model.name] = model
        for device in [d for d in self._cache.values() if d.model == model.name]:
            self._tell(device)
        return model

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

    def every(self) -> list[Device]:
        """Every device of every tenant (for platform-wide work such as retention)."""
        return sorted(self._cache.values(), key=lambda device: (device.tenant, device.id))

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
        self._tell(stored)
        return stored

    def _tell(self, device: Device) -> None:
        for listener in list(self.listeners):
            listener(device)


def _device_from_row(row: sa.RowMapping) -> Device:
    return msgspec.convert(row_dict(row), Device)
