"""Device twins: the state a device should have (desired) beside what it says it has.

People and rules write *desired* state; the platform sends the whole desired document
to the device on its ``config`` topic (MQTT 5, retained, so a device that connects
later still gets it). The device applies it and publishes its *reported* state on
its ``state`` topic; the difference (``delta``) is what the device has not applied
yet. Each side carries a version that grows by one per change, so a device can say
which desired version it applied (``{"state": {...}, "version": 3}``).

A patch merges into the document; a key set to ``null`` is removed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.store.metadata import device_twins

__all__ = ["MAX_TWIN_BYTES", "ReportedState", "Twin", "TwinStore"]

#: The largest desired or reported document; twins are settings, not telemetry.
MAX_TWIN_BYTES = 16_384


class Twin(msgspec.Struct, frozen=True):
    """Desired and reported state of one device, and what still differs."""

    device: str
    desired: dict[str, Any]
    desired_version: int
    desired_ms: int
    reported: dict[str, Any]
    reported_version: int
    reported_ms: int
    applied_version: int | None
    delta: dict[str, Any]

    @property
    def in_sync(self) -> bool:
        """Whether the device reports everything it is asked to have."""
        return not self.delta


class ReportedState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a device publishes on its ``state`` topic."""

    state: dict[str, Any]
    version: int | None = None


_reported = msgspec.json.Decoder(ReportedState)


def _merge(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(document)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _delta(desired: Mapping[str, Any], reported: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in desired.items() if reported.get(k) != v}


def _checked(document: dict[str, Any], side: str) -> dict[str, Any]:
    size = len(msgspec.json.encode(document))
    if size > MAX_TWIN_BYTES:
        raise ValueError(f"{side} state of {size} bytes exceeds {MAX_TWIN_BYTES}")
    return document


class TwinStore:
    """Twins in the metadata database; one writer at a time per process."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    def get(self, tenant: str, device: str) -> Twin:
        """The device's twin (empty documents at version 0 when it has none yet)."""
        with self._engine.connect() as connection:
            row = self._row(connection, tenant, device)
        return self._twin(device, row)

    def set_desired(self, tenant: str, device: str, patch: Mapping[str, Any]) -> Twin:
        """Merge ``patch`` into the desired state; the version grows only on a change."""
        with self._lock, self._engine.begin() as connection:
            row = self._row(connection, tenant, device)
            desired = _checked(_merge(row["desired"], patch), "desired")
            if desired != row["desired"] or not row["exists"]:
                version = row["desired_version"] + (desired != row["desired"])
                self._write(
                    connection,
                    tenant,
                    device,
                    row,
                    desired=desired,
                    desired_version=version,
                    desired_ms=now_ms(),
                )
                row = self._row(connection, tenant, device)
        return self._twin(device, row)

    def report(self, tenant: str, device: str, payload: bytes) -> Twin:
        """Take a device's reported state (a ``state`` message); ``ValueError`` says why
        a payload is refused."""
        try:
            reported = _reported.decode(payload)
        except msgspec.DecodeError as exc:
            raise ValueError(f"reported state of {device!r} is not valid: {exc}") from None
        with self._lock, self._engine.begin() as connection:
            row = self._row(connection, tenant, device)
            document = _checked(_merge(row["reported"], reported.state), "reported")
            applied = reported.version if reported.version is not None else row["applied"]
            self._write(
                connection,
                tenant,
                device,
                row,
                reported=document,
                reported_version=row["reported_version"] + 1,
                reported_ms=now_ms(),
                applied=applied,
            )
            row = self._row(connection, tenant, device)
        return self._twin(device, row)

    def _row(self, connection: sa.Connection, tenant: str, device: str) -> dict[str, Any]:
        found = (
            connection.execute(
                sa.select(device_twins).where(
                    device_twins.c.tenant == tenant, device_twins.c.device == device
                )
            )
            .mappings()
            .one_or_none()
        )
        if found is None:
            return {
                "exists": False,
                "desired": {},
                "desired_version": 0,
                "desired_ms": 0,
                "reported": {},
                "reported_version": 0,
                "reported_ms": 0,
                "applied": None,
            }
        return {
            "exists": True,
            "desired": dict(found["desired"]),
            "desired_version": found["desired_version"],
            "desired_ms": found["desired_ms"],
            "reported": dict(found["reported"]),
            "reported_version": found["reported_version"],
            "reported_ms": found["reported_ms"],
            "applied": found["applied_version"],
        }

    def _write(
        self,
        connection: sa.Connection,
        tenant: str,
        device: str,
        row: dict[str, Any],
        **changes: Any,
    ) -> None:
        values = {k: row[k] for k in row if k not in ("exists", "applied")}
        values["applied_version"] = changes.pop("applied", row["applied"])
        values.update(changes)
        if row["exists"]:
            connection.execute(
                device_twins.update()
                .where(device_twins.c.tenant == tenant, device_twins.c.device == device)
                .values(values)
            )
        else:
            connection.execute(device_twins.insert().values(tenant=tenant, device=device, **values))

    @staticmethod
    def _twin(device: str, row: dict[str, Any]) -> Twin:
        return Twin(
            device=device,
            desired=row["desired"],
            desired_version=row["desired_version"],
            desired_ms=row["desired_ms"],
            reported=row["reported"],
            reported_version=row["reported_version"],
            reported_ms=row["reported_ms"],
            applied_version=row["applied"],
            delta=_delta(row["desired"], row["reported"]),
        )
