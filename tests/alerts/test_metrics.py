"""Alert metrics computed exactly on hand-built timelines, and the SQL tally agrees."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import TENANT
from trellis.alerts import AlertService
from trellis.alerts.feedback import Feedback, Verdict
from trellis.alerts.metrics import (
    DAY_MS,
    AlertFacts,
    GroupBy,
    Tally,
    compute,
    facts_from_timeline,
    metrics_of,
    tally,
)
from trellis.alerts.reports import alert_metrics, sql_tally
from trellis.alerts.timeline import AlertEvent, EventKind
from trellis.core.types import AlertSeverity, Device
from trellis.devices.registry import DeviceRegistry

S = 1_000
MIN = 60 * S
T0 = 1_764_028_800_000  # 2025-11-25T00:00:00Z, a UTC midnight

_ids = iter(range(1, 10_000))


def ev(kind: EventKind, at: int, actor: str = "ana", **detail: object) -> AlertEvent:
    """One hand-written event of alert 0."""
    return AlertEvent(next(_ids), 0, kind, actor, at, dict(detail))


def facts(alert_id: int, site: str, rule: str, *events: AlertEvent) -> AlertFacts:
    """Facts of a hand-built timeline."""
    return facts_from_timeline(
        alert_id=alert_id,
        device=f"d{alert_id}",
        site=site,
        rule=rule,
        model_version="v1" if rule == "ml" else None,
        events=events,
    )


#: Five alerts on two sites, every path through the lifecycle.
HAND_BUILT = [
    # acked after 2 min, action at 5 min, resolved at 10 min as a true positive
    facts(
        1,
        "a",
        "hot",
        ev(EventKind.RAISED, T0, "system"),
        ev(EventKind.ACKNOWLEDGED, T0 + 2 * MIN),
        ev(EventKind.ACTION, T0 + 5 * MIN, action="work order"),
        ev(EventKind.CLEARED, T0 + 8 * MIN, "system"),
        ev(EventKind.RESOLVED, T0 + 10 * MIN, verdict="true_positive"),
    ),
    # acked after 4 min (a second ack is not the first), cleared, resolved at 20 min as FP
    facts(
        2,
        "a",
        "hot",
        ev(EventKind.RAISED, T0 + 1 * MIN, "system"),
        ev(EventKind.REPEATED, T0 + 2 * MIN, "system"),
        ev(EventKind.ACKNOWLEDGED, T0 + 5 * MIN),
        ev(EventKind.ACKNOWLEDGED, T0 + 6 * MIN, "bob"),
        ev(EventKind.CLEARED, T0 + 7 * MIN, "system"),
        ev(EventKind.RESOLVED, T0 + 21 * MIN, verdict="false_positive"),
    ),
    # never acknowledged, still open
    facts(3, "b", "ml", ev(EventKind.RAISED, T0 + 3 * MIN, "system")),
    # resolved without a verdict after 30 min (resolving acknowledges at the same instant)
    facts(
        4,
        "b",
        "ml",
        ev(EventKind.RAISED, T0 + 4 * MIN, "system"),
        ev(EventKind.ACKNOWLEDGED, T0 + 34 * MIN),
        ev(EventKind.RESOLVED, T0 + 34 * MIN),
    ),
    # not actionable, acked after 1 min, resolved after 6 min
    facts(
        5,
        "b",
        "hot",
        ev(EventKind.RAISED, T0 + 5 * MIN, "system"),
        ev(EventKind.ACKNOWLEDGED, T0 + 6 * MIN),
        ev(EventKind.CLEARED, T0 + 8 * MIN, "system"),
        ev(EventKind.RESOLVED, T0 + 11 * MIN, verdict="not_actionable"),
    ),
]


def test_each_metric_exactly_on_hand_built_timelines() -> None:
    """MTTA, MTTR, mean time to action, false alert rate, HITL ratio, alerts per
    asset-day and share never acknowledged, by hand."""
    (everything,) = compute(
        tally(HAND_BUILT, GroupBy.NONE, T0, T0 + DAY_MS), GroupBy.NONE, T0, T0 + DAY_MS, {}, 10
    )
    assert everything.alerts == 5
    # acks after 2, 4, 30, 1 min (alert 3 never): mean 9.25 min
    assert everything.mtta_s == pytest.approx((2 + 4 + 30 + 1) * 60 / 4)
    # resolves after 10, 20, 30, 6 min
    assert everything.mttr_s == pytest.approx((10 + 20 + 30 + 6) * 60 / 4)
    # only alert 1 had an action, after 5 min
    assert everything.mean_time_to_action_s == pytest.approx(300.0)
    # judged: 1 (TP), 2 (FP), 5 (not actionable); one false positive
    assert everything.false_alert_rate == pytest.approx(1 / 3)
    # resolved: 1, 2, 4, 5; with a human verdict: 1, 2, 5
    assert everything.hitl_resolution_ratio == pytest.approx(3 / 4)
    # 5 alerts over 10 assets for 1 day
    assert everything.alerts_per_asset_day == pytest.approx(0.5)
    assert everything.never_acknowledged_share == pytest.approx(1 / 5)
    assert (everything.acknowledged, everything.resolved, everything.judged) == (4, 4, 3)


def test_metrics_per_site_rule_model_version_and_day() -> None:
    """Groups split the same alerts; each group's figures are its own alerts'."""
    start, end = T0, T0 + 2 * DAY_MS
    by_site = compute(
        tally(HAND_BUILT, GroupBy.SITE, start, end), GroupBy.SITE, start, end, {"a": 2, "b": 4}, 6
    )
    a, b = by_site
    assert (a.group, a.alerts, a.assets, a.days) == ("a", 2, 2, 2.0)
    assert a.false_alert_rate == pytest.approx(1 / 2)
    assert a.alerts_per_asset_day == pytest.approx(2 / (2 * 2))
    assert (b.group, b.alerts, b.never_acknowledged_share) == ("b", 3, pytest.approx(1 / 3))
    assert b.hitl_resolution_ratio == pytest.approx(1 / 2)
    by_rule = {
        m.group: m
        for m in compute(
            tally(HAND_BUILT, GroupBy.RULE, start, end), GroupBy.RULE, start, end, {}, 6
        )
    }
    assert by_rule["ml"].mtta_s == pytest.approx(30 * 60)
    assert by_rule["hot"].mtta_s == pytest.approx((2 + 4 + 1) * 60 / 3)
    by_version = {
        m.group: m.alerts
        for m in compute(
            tally(HAND_BUILT, GroupBy.MODEL_VERSION, start, end),
            GroupBy.MODEL_VERSION,
            start,
            end,
            {},
            6,
        )
    }
    assert by_version == {"": 3, "v1": 2}
    (day,) = compute(tally(HAND_BUILT, GroupBy.DAY, start, end), GroupBy.DAY, start, end, {}, 6)
    assert (day.group, day.days, day.alerts) == (str(T0), 1.0, 5)


def test_the_period_selects_alerts_by_raise_time() -> None:
    """Only alerts raised in [start, end) count; events after end still count for them."""
    t = tally(HAND_BUILT, GroupBy.NONE, T0 + 1 * MIN, T0 + 4 * MIN)
    assert t["all"].alerts == 2  # alerts 2 and 3; alert 4 is raised exactly at end
    assert t["all"].resolved == 1


def test_empty_denominators_give_none_not_zero() -> None:
    """No judged, resolved or acknowledged alerts, or no assets: the figure is None."""
    m = metrics_of("x", Tally(alerts=2), assets=0, days=1.0)
    assert (m.mtta_s, m.mttr_s, m.mean_time_to_action_s) == (None, None, None)
    assert (m.false_alert_rate, m.hitl_resolution_ratio, m.alerts_per_asset_day) == (
        None,
        None,
        None,
    )
    assert m.never_acknowledged_share == 1.0
    assert metrics_of("x", Tally(), 3, 1.0).never_acknowledged_share is None


def test_a_timeline_without_a_raise_is_refused() -> None:
    """Facts need the raise; a timeline missing it is a ValueError naming the alert."""
    with pytest.raises(ValueError, match="alert 7"):
        facts_from_timeline(
            alert_id=7,
            device="d",
            site="",
            rule="r",
            model_version=None,
            events=[ev(EventKind.ACKNOWLEDGED, T0)],
        )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def test_sql_tally_equals_the_replayed_timelines(metadata_engine: sa.Engine) -> None:
    """The same operations through the service: the SQL tally per group equals the
    tally of the facts replayed from each stored timeline, and the API-level report
    counts the registered devices as assets."""
    registry = DeviceRegistry(metadata_engine)
    for n, site in enumerate(["a", "a", "b", "b", "b"]):
        registry.register(Device(TENANT, f"d{n}", "pump", site=site))
    clock = Clock()
    service = AlertService(metadata_engine, clock=clock)

    def raise_(n: int, rule: str) -> int:
        return service.raise_alert(
            tenant=TENANT,
            device=f"d{n}",
            rule=rule,
            type="T",
            severity=AlertSeverity.MAJOR,
            message="m",
            value=1.0,
            at_ms=clock.now,
            model_version="v1" if rule == "ml" else None,
        ).id

    ids = [raise_(n, "ml" if n % 2 else "hot") for n in range(5)]
    clock.now += 2 * MIN
    service.acknowledge(TENANT, ids[0], "ana")
    service.record_action(TENANT, ids[1], "bob", "command")
    for n in (0, 1, 2):
        service.clear(
            tenant=TENANT, rule="ml" if n % 2 else "hot", device=f"d{n}", value=0.0, at_ms=clock.now
        )
    clock.now += 3 * MIN
    service.resolve(TENANT, ids[0], "ana", Feedback(Verdict.FALSE_POSITIVE))
    service.resolve(TENANT, ids[1], "bob", Feedback(Verdict.TRUE_POSITIVE, action_taken="command"))
    service.resolve(TENANT, ids[3], "bob")

    replayed = []
    for alert in service.find(TENANT):
        replayed.append(
            facts_from_timeline(
                alert_id=alert.id,
                device=alert.device,
                site=alert.site,
                rule=alert.rule,
                model_version=alert.model_version,
                events=service.timeline(TENANT, alert.id),
            )
        )
    start, end = T0 - DAY_MS, T0 + DAY_MS
    with metadata_engine.connect() as c:
        for by in GroupBy:
            assert sql_tally(c, TENANT, by, start, end) == tally(replayed, by, start, end), by
    site_b = alert_metrics(metadata_engine, TENANT, GroupBy.NONE, start, end, site="b")[0]
    assert (site_b.alerts, site_b.assets, site_b.days) == (3, 3, 2.0)
    overall = alert_metrics(metadata_engine, TENANT, GroupBy.NONE, start, end)[0]
    assert overall.false_alert_rate == pytest.approx(1 / 2)
    assert overall.mean_time_to_action_s == pytest.approx(120.0)
    assert overall.never_acknowledged_share == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="must be before"):
        alert_metrics(metadata_engine, TENANT, GroupBy.NONE, end, start)
