"""The values that travel through Trellis.

They are ``msgspec`` structs: frozen where they are facts (a message, a reading),
cheap to build on the hot path, and encoded to JSON without an intermediate dict.
Timestamps are integers, milliseconds since the Unix epoch, always UTC: the edge may
send any offset, the inside never sees one.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = [
    "Alert",
    "AlertSeverity",
    "AlertStatus",
    "Device",
    "DeviceStatus",
    "Quality",
    "RawMessage",
    "Reading",
]


class Quality(enum.IntEnum):
    """How far a reading can be trusted, in the spirit of OPC UA status codes."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """A message exactly as it arrived, before anything was parsed.

    ``id`` is unique per message and becomes the lineage of every reading derived
    from it; ``properties`` carries protocol metadata such as MQTT 5 user properties.
    """

    id: str
    source: str
    topic: str
    payload: bytes
    received_ms: int
    properties: dict[str, str] = {}


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One value of one metric of one device at one instant.

    The key is (tenant, device, metric, ts): storing the same key twice is a no-op,
    which is what makes redelivered messages harmless.
    """

    tenant: str
    device: str
    metric: str
    ts: int
    value: float
    unit: str | None = None
    quality: Quality = Quality.GOOD
    seq: int | None = None
    source_msg: str | None = None


class DeviceStatus(enum.StrEnum):
    """Where a device is in its life."""

    ACTIVE = "active"
    QUARANTINED = "quarantined"
    REVOKED = "revoked"
    SUNSET = "sunset"


class Device(msgspec.Struct, frozen=True):
    """A registered device; ``model`` names its device model (what it measures)."""

    tenant: str
    id: str
    model: str
    name: str = ""
    site: str = ""
    status: DeviceStatus = DeviceStatus.ACTIVE
    attributes: dict[str, Any] = {}
    created_ms: int = 0


class AlertSeverity(enum.StrEnum):
    """The severities ThingsBoard and PagerDuty users know, most severe first."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INDETERMINATE = "indeterminate"


class AlertStatus(enum.StrEnum):
    """Whether the condition behind an alert still holds.

    Acknowledgement is a separate flag, as in ThingsBoard: an alert can be
    active and acknowledged, or cleared and never acknowledged.
    """

    ACTIVE = "active"
    CLEARED = "cleared"
    RESOLVED = "resolved"


class Alert(msgspec.Struct, frozen=True):
    """An alert raised by a rule for one device.

    ``dedup_key`` is unique among open alerts: a condition that trips again while its
    alert is open increments ``count`` instead of opening a second alert. Every field
    after ``raised_ms`` is a summary of the alert's timeline (``trellis.alerts.timeline``),
    written in the same transaction as the event that changed it.
    """

    id: int
    tenant: str
    device: str
    rule: str
    type: str
    severity: AlertSeverity
    status: AlertStatus
    dedup_key: str
    message: str
    value: float | None
    raised_ms: int
    updated_ms: int
    count: int = 1
    acknowledged: bool = False
    acknowledged_ms: int | None = None
    acknowledged_by: str | None = None
    cleared_ms: int | None = None
    resolved_ms: int | None = None
    resolved_by: str | None = None
    site: str = ""
    metric: str | None = None
    model_version: str | None = None
    assignee: str | None = None
    snoozed_until_ms: int | None = None
    escalated_ms: int | None = None
    escalation_level: int = 0
    first_action_ms: int | None = None
    verdict: str | None = None
