"""Alerts and the operator loop: lifecycle and timeline, feedback that becomes labels,
metrics (MTTA, false alert rate, HITL ratio …), escalation and notifications."""

from trellis.alerts.feedback import Feedback, Label, Verdict
from trellis.alerts.metrics import AlertMetrics, GroupBy
from trellis.alerts.notify import Channel, EmailChannel, Notifier, WebhookChannel
from trellis.alerts.service import AlertOutcome, AlertService, dedup_key
from trellis.alerts.timeline import AlertEvent, EventKind

__all__ = [
    "AlertEvent",
    "AlertMetrics",
    "AlertOutcome",
    "AlertService",
    "Channel",
    "EmailChannel",
    "EventKind",
    "Feedback",
    "GroupBy",
    "Label",
    "Notifier",
    "Verdict",
    "WebhookChannel",
    "dedup_key",
]
