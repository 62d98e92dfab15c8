"""The metrics of :mod:`.metrics`, tallied in SQL over the alert rows.

An alert row's summary columns are its timeline's facts (written in the same
transaction as each event), so one ``GROUP BY`` over the alerts raised in a period
gives the same :class:`~trellis.alerts.metrics.Tally` as replaying every event, in
milliseconds rather than seconds at a million events. ``tests/alerts`` checks that
both agree.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from trellis.alerts.feedback import Verdict
from trellis.alerts.metrics import DAY_MS, AlertMetrics, GroupBy, Tally, compute
from trellis.store.metadata import alerts, devices

__all__ = ["alert_metrics", "sql_tally"]


def _group_column(by: GroupBy) -> Any:
    match by:
        case GroupBy.NONE:
            return sa.literal("all")
        case GroupBy.SITE:
            return alerts.c.site
        case GroupBy.RULE:
            return alerts.c.rule
        case GroupBy.MODEL_VERSION:
            return sa.func.coalesce(alerts.c.model_version, "")
        case GroupBy.DAY:
            return sa.cast((alerts.c.raised_ms // DAY_MS) * DAY_MS, sa.String)


def _count_if(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _sum_since_raise(column: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(column - alerts.c.raised_ms), 0)


def sql_tally(
    connection: sa.Connection,
    tenant: str,
    by: GroupBy,
    start_ms: int,
    end_ms: int,
    *,
    site: str | None = None,
    rule: str | None = None,
) -> dict[str, Tally]:
    """The tally per group of the alerts raised in ``[start_ms, end_ms)``."""
    group = _group_column(by).label("grp")
    verdict = alerts.c.verdict
    query = (
        sa.select(
            group,
            sa.func.count(),
            _count_if(alerts.c.acknowledged_ms.is_not(None)),
            _sum_since_raise(alerts.c.acknowledged_ms),
            _count_if(alerts.c.resolved_ms.is_not(None)),
            _sum_since_raise(alerts.c.resolved_ms),
            _count_if(alerts.c.first_action_ms.is_not(None)),
            _sum_since_raise(alerts.c.first_action_ms),
            _count_if(verdict.is_not(None)),
            _count_if(verdict == Verdict.FALSE_POSITIVE.value),
            _count_if(sa.and_(verdict.is_not(None), alerts.c.resolved_ms.is_not(None))),
        )
        .where(
            alerts.c.tenant == tenant,
            alerts.c.raised_ms >= start_ms,
            alerts.c.raised_ms < end_ms,
        )
        .group_by(group)
    )
    if site is not None:
        query = query.where(alerts.c.site == site)
    if rule is not None:
        query = query.where(alerts.c.rule == rule)
    return {str(row[0]): Tally(*(int(v) for v in row[1:])) for row in connection.execute(query)}


def alert_metrics(
    engine: sa.Engine,
    tenant: str,
    by: GroupBy,
    start_ms: int,
    end_ms: int,
    *,
    site: str | None = None,
    rule: str | None = None,
) -> list[AlertMetrics]:
    """The metrics of the period per group; assets are the tenant's registered devices
    (at ``site`` when given, or per site when grouping by site)."""
    if start_ms >= end_ms:
        raise ValueError(f"start ({start_ms}) must be before end ({end_ms})")
    per_site = sa.select(devices.c.site, sa.func.count()).where(devices.c.tenant == tenant)
    with engine.connect() as c:
        tallies = sql_tally(c, tenant, by, start_ms, end_ms, site=site, rule=rule)
        assets = {str(s): int(n) for s, n in c.execute(per_site.group_by(devices.c.site)).all()}
    all_assets = assets.get(site, 0) if site is not None else sum(assets.values())
    return compute(tallies, by, start_ms, end_ms, assets, all_assets)
