"""The timeline of an alert: every change as an event, and the state it adds up to.

The service writes an event for each change in the same transaction as the summary
columns on the alert row; :func:`replay` derives those columns from the events
alone, which is how tests prove the two never disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = ["SYSTEM", "AlertEvent", "EventKind", "TimelineState", "replay"]

#: The actor of changes nobody made by hand (rules raising, escalation timers).
SYSTEM = "system"


class EventKind(enum.StrEnum):
    """What happened to an alert."""

    RAISED = "raised"
    REPEATED = "repeated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    COMMENTED = "commented"
    SNOOZED = "snoozed"
    ESCALATED = "escalated"
    ACTION = "action"
    RESOLVED = "resolved"


class AlertEvent(msgspec.Struct, frozen=True):
    """One change: who (``actor``), when (``at_ms``), what (``kind`` and ``detail``)."""

    id: int
    alert_id: int
    kind: EventKind
    actor: str
    at_ms: int
    detail: dict[str, Any] = {}


class TimelineState(msgspec.Struct, frozen=True):
    """What the events of one alert add up to (the alert row's summary columns)."""

    status: str = "active"
    count: int = 0
    raised_ms: int | None = None
    acknowledged: bool = False
    acknowledged_ms: int | None = None
    acknowledged_by: str | None = None
    cleared_ms: int | None = None
    resolved_ms: int | None = None
    resolved_by: str | None = None
    assignee: str | None = None
    snoozed_until_ms: int | None = None
    escalated_ms: int | None = None
    escalation_level: int = 0
    first_action_ms: int | None = None
    verdict: str | None = None


def replay(events: Iterable[AlertEvent]) -> TimelineState:
    """Fold events (in id order) into the state they prove."""
    s: dict[str, Any] = msgspec.structs.asdict(TimelineState())
    for e in events:
        match e.kind:
            case EventKind.RAISED:
                s.update(status="active", count=1, raised_ms=e.at_ms)
            case EventKind.REPEATED:
                s.update(status="active", count=s["count"] + 1, cleared_ms=None)
            case EventKind.CLEARED:
                s.update(status="cleared", cleared_ms=e.at_ms)
            case EventKind.ACKNOWLEDGED:
                s.update(acknowledged=True, acknowledged_ms=e.at_ms, acknowledged_by=e.actor)
            case EventKind.ASSIGNED:
                s["assignee"] = e.detail.get("assignee")
            case EventKind.SNOOZED:
                s["snoozed_until_ms"] = e.detail.get("until_ms")
            case EventKind.ESCALATED:
                s.update(escalated_ms=e.at_ms, escalation_level=s["escalation_level"] + 1)
            case EventKind.ACTION:
                if s["first_action_ms"] is None:
                    s["first_action_ms"] = e.at_ms
            case EventKind.RESOLVED:
                s.update(
                    status="resolved",
                    resolved_ms=e.at_ms,
                    resolved_by=e.actor,
                    verdict=e.detail.get("verdict"),
                )
            case EventKind.COMMENTED:
                pass
    return TimelineState(**s)
