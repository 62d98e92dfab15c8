"""Operational metrics of the alert loop, as pure functions of alert timelines.

The exact definitions are in ``docs/metrics.md``; this module is their reference
implementation. The cohort of a period is every alert *raised* in ``[start, end)``,
judged by its timeline as known when the metrics are computed. Each alert is reduced
to its :class:`AlertFacts` (:func:`facts_from_timeline`), facts add up to a
:class:`Tally` (sums and counts only, so SQL can compute the same tally over a
million alerts, see :mod:`.reports`), and a tally becomes :class:`AlertMetrics`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import msgspec

from trellis.alerts.feedback import Verdict
from trellis.alerts.timeline import AlertEvent, EventKind

__all__ = [
    "DAY_MS",
    "AlertFacts",
    "AlertMetrics",
    "GroupBy",
    "Tally",
    "compute",
    "days_in",
    "facts_from_timeline",
    "group_of",
    "metrics_of",
    "tally",
]

DAY_MS = 86_400_000


class GroupBy(enum.StrEnum):
    """How metrics are split: not at all, or per site, rule, model version, UTC day."""

    NONE = "none"
    SITE = "site"
    RULE = "rule"
    MODEL_VERSION = "model_version"
    DAY = "day"


class AlertFacts(msgspec.Struct, frozen=True):
    """What the metrics need of one alert: who raised it where, and when things happened."""

    alert_id: int
    device: str
    site: str
    rule: str
    model_version: str | None
    raised_ms: int
    acknowledged_ms: int | None = None
    resolved_ms: int | None = None
    first_action_ms: int | None = None
    verdict: Verdict | None = None


class Tally(msgspec.Struct):
    """Counts and sums of one group of alerts; adding tallies adds groups."""

    alerts: int = 0
    acknowledged: int = 0
    ack_ms_sum: int = 0
    resolved: int = 0
    resolve_ms_sum: int = 0
    actioned: int = 0
    action_ms_sum: int = 0
    judged: int = 0
    false_positives: int = 0
    resolved_with_verdict: int = 0

    def add(self, f: AlertFacts) -> None:
        """Count one alert in."""
        self.alerts += 1
        if f.acknowledged_ms is not None:
            self.acknowledged += 1
            self.ack_ms_sum += f.acknowledged_ms - f.raised_ms
        if f.resolved_ms is not None:
            self.resolved += 1
            self.resolve_ms_sum += f.resolved_ms - f.raised_ms
            if f.verdict is not None:
                self.resolved_with_verdict += 1
        if f.first_action_ms is not None:
            self.actioned += 1
            self.action_ms_sum += f.first_action_ms - f.raised_ms
        if f.verdict is not None:
            self.judged += 1
            self.false_positives += f.verdict is Verdict.FALSE_POSITIVE


class AlertMetrics(msgspec.Struct, frozen=True):
    """The metrics of one group; a figure is ``None`` when its denominator is zero."""

    group: str
    alerts: int
    mtta_s: float | None
    mttr_s: float | None
    mean_time_to_action_s: float | None
    false_alert_rate: float | None
    hitl_resolution_ratio: float | None
    alerts_per_asset_day: float | None
    never_acknowledged_share: float | None
    acknowledged: int
    resolved: int
    judged: int
    false_positives: int
    assets: int
    days: float


def facts_from_timeline(
    *,
    alert_id: int,
    device: str,
    site: str,
    rule: str,
    model_version: str | None,
    events: Iterable[AlertEvent],
) -> AlertFacts:
    """Reduce one alert's events to its facts (first raise, first acknowledgement,
    first action, the resolve and its verdict)."""
    raised = ack = resolved = action = None
    verdict: Verdict | None = None
    for e in sorted(events, key=lambda e: (e.at_ms, e.id)):
        if e.kind is EventKind.RAISED and raised is None:
            raised = e.at_ms
        elif e.kind is EventKind.ACKNOWLEDGED and ack is None:
            ack = e.at_ms
        elif e.kind is EventKind.ACTION and action is None:
            action = e.at_ms
        elif e.kind is EventKind.RESOLVED and resolved is None:
            resolved = e.at_ms
            given = e.detail.get("verdict")
            verdict = Verdict(given) if given else None
    if raised is None:
        raise ValueError(f"alert {alert_id}: a timeline without a 'raised' event")
    return AlertFacts(
        alert_id, device, site, rule, model_version, raised, ack, resolved, action, verdict
    )


def group_of(f: AlertFacts, by: GroupBy) -> str:
    """The name of the group ``f`` falls in (``""`` for an unknown site or version)."""
    match by:
        case GroupBy.NONE:
            return "all"
        case GroupBy.SITE:
            return f.site
        case GroupBy.RULE:
            return f.rule
        case GroupBy.MODEL_VERSION:
            return f.model_version or ""
        case GroupBy.DAY:
            return str(f.raised_ms // DAY_MS * DAY_MS)


def tally(facts: Iterable[AlertFacts], by: GroupBy, start_ms: int, end_ms: int) -> dict[str, Tally]:
    """Tally the alerts raised in ``[start_ms, end_ms)`` per group."""
    out: dict[str, Tally] = {}
    for f in facts:
        if start_ms <= f.raised_ms < end_ms:
            out.setdefault(group_of(f, by), Tally()).add(f)
    return out


def _mean_s(total_ms: int, n: int) -> float | None:
    return total_ms / n / 1000 if n else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def metrics_of(group: str, t: Tally, assets: int, days: float) -> AlertMetrics:
    """The metrics of one group's tally, over ``assets`` assets for ``days`` days."""
    asset_days = assets * days
    return AlertMetrics(
        group=group,
        alerts=t.alerts,
        mtta_s=_mean_s(t.ack_ms_sum, t.acknowledged),
        mttr_s=_mean_s(t.resolve_ms_sum, t.resolved),
        mean_time_to_action_s=_mean_s(t.action_ms_sum, t.actioned),
        false_alert_rate=_share(t.false_positives, t.judged),
        hitl_resolution_ratio=_share(t.resolved_with_verdict, t.resolved),
        alerts_per_asset_day=t.alerts / asset_days if asset_days > 0 else None,
        never_acknowledged_share=_share(t.alerts - t.acknowledged, t.alerts),
        acknowledged=t.acknowledged,
        resolved=t.resolved,
        judged=t.judged,
        false_positives=t.false_positives,
        assets=assets,
        days=days,
    )


def days_in(by: GroupBy, group: str, start_ms: int, end_ms: int) -> float:
    """Days of the period a group covers: the whole period, or for a UTC-day group
    the part of that day inside the period."""
    if by is GroupBy.DAY:
        day = int(group)
        return (min(end_ms, day + DAY_MS) - max(start_ms, day)) / DAY_MS
    return (end_ms - start_ms) / DAY_MS


def compute(
    tallies: Mapping[str, Tally],
    by: GroupBy,
    start_ms: int,
    end_ms: int,
    assets: Mapping[str, int],
    all_assets: int,
) -> list[AlertMetrics]:
    """Metrics per group, sorted by group; ``assets`` counts assets per site (only
    used when grouping by site; other groups are judged against ``all_assets``)."""
    return [
        metrics_of(
            group,
            tallies[group],
            assets.get(group, 0) if by is GroupBy.SITE else all_assets,
            days_in(by, group, start_ms, end_ms),
        )
        for group in sorted(tallies)
    ]
