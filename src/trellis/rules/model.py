"""Rules as data: what a rule says, validated when it is saved.

The first kind is the threshold-for-duration rule operators ask for most: "raise a
major alert when a pump's temperature stays above 80 °C for 10 s; clear it when it
falls below 75 °C". The clear threshold gives hysteresis, so a value hovering at
the threshold does not flap the alert. CEL conditions, windows and flows come with
the rule-engine issue; they extend this model rather than replace it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from trellis.core.types import AlertSeverity
from trellis.rules.spec import Selector

__all__ = ["COMPARATORS", "ThresholdRule"]

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")


class ThresholdRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Raise when ``metric op threshold`` holds for ``for_s`` seconds of event time.

    ``select`` narrows the devices (models, sites, tags) or, by Brick class and place,
    picks the points to judge; with ``select.classes`` the metric may be left out, so
    one rule covers every device model whose property is of that class.
    """

    id: str
    metric: str = ""
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    severity: AlertSeverity
    for_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    clear_threshold: float | None = None
    model: str | None = None
    name: str = ""
    enabled: bool = True
    select: Selector = Selector()

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(
                f"rule id {self.id!r} must be lowercase letters, digits, '.', '_' or '-'"
            )
        if not self.metric and not self.select.semantic:
            raise ValueError(
                f"rule {self.id!r} needs a metric, or select.classes / select.within to "
                "judge the points of the semantic model"
            )
        if self.clear_threshold is not None and COMPARATORS[self.op](
            self.clear_threshold, self.threshold
        ):
            raise ValueError(
                f"clear_threshold {self.clear_threshold} of rule {self.id!r} lies inside the "
                f"alert condition '{self.op} {self.threshold}'; it must be on the other side"
            )

    @property
    def title(self) -> str:
        """What an operator reads: the name, or the condition."""
        subject = self.metric or " / ".join(self.select.classes) or "value"
        return self.name or f"{subject} {self.op} {self.threshold:g}"

    def trips(self, value: float) -> bool:
        """Whether ``value`` meets the alert condition."""
        return COMPARATORS[self.op](value, self.threshold)

    def holds(self, value: float) -> bool:
        """Whether a raised alert stays active at ``value``: until the value passes the
        clear threshold (hysteresis), or stops tripping when there is none."""
        if self.clear_threshold is None:
            return self.trips(value)
        if self.op in (">", ">="):
            return value >= self.clear_threshold
        return value <= self.clear_threshold
