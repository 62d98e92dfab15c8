"""Operator feedback on resolve, and the training label it becomes.

Feedback is allowed once the condition has cleared (status ``cleared``): while the
rule still sees the condition, the alert is *active* and a verdict would be about a
situation still unfolding, and resolving it would reopen a new alert at the next
reading. An operator who thinks an active alert is false stops it at the rule.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import msgspec

__all__ = [
    "ACTIONS",
    "DEFAULT_ROOT_CAUSES",
    "Feedback",
    "Label",
    "Verdict",
    "root_causes_for",
    "validate_feedback",
]


class Verdict(enum.StrEnum):
    """What the alert turned out to be."""

    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"
    NOT_ACTIONABLE = "not_actionable"


#: Root causes offered for alert types without a list of their own.
DEFAULT_ROOT_CAUSES: tuple[str, ...] = (
    "equipment fault",
    "process upset",
    "sensor fault",
    "threshold too tight",
    "planned work",
    "unknown",
)

#: What an operator did about it; anything but ``none`` counts as an action (MTTAct).
ACTIONS: tuple[str, ...] = ("none", "adjustment", "work order", "command", "replaced part")


class Feedback(msgspec.Struct, frozen=True):
    """The operator's judgement of an alert, given when resolving it."""

    verdict: Verdict
    root_cause: str = "unknown"
    action_taken: str = "none"
    note: str = ""


class Label(msgspec.Struct, frozen=True):
    """Feedback attached to the readings it judges and to what raised the alert.

    ``window_*`` spans the alert (raise to clear) with a margin either side, so a
    training job can fetch exactly the readings the operator was judging.
    """

    id: int
    tenant: str
    alert_id: int
    verdict: Verdict
    root_cause: str
    action_taken: str
    note: str
    device: str
    site: str
    metrics: list[str]
    window_start_ms: int
    window_end_ms: int
    rule: str
    model_version: str | None
    labelled_by: str
    labelled_ms: int


def root_causes_for(alert_type: str, catalogue: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The root causes an operator may pick for alerts of ``alert_type``."""
    return tuple(catalogue.get(alert_type, DEFAULT_ROOT_CAUSES))


def validate_feedback(
    feedback: Feedback, alert_type: str, catalogue: Mapping[str, Sequence[str]]
) -> None:
    """Raise ``ValueError`` naming the bad field and the allowed values."""
    causes = root_causes_for(alert_type, catalogue)
    if feedback.root_cause not in causes:
        raise ValueError(
            f"root_cause {feedback.root_cause!r} is not one of {list(causes)} "
            f"(the list for alerts of type {alert_type!r})"
        )
    if feedback.action_taken not in ACTIONS:
        raise ValueError(f"action_taken {feedback.action_taken!r} is not one of {list(ACTIONS)}")
    if len(feedback.note) > 2000:
        raise ValueError(f"note is {len(feedback.note)} characters; at most 2000")
