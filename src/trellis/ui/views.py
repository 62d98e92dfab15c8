"""What the dashboard's pages show, gathered from the platform as plain values.

The routes stay thin: they call a ``*_view`` function here and render its result.
Functions that touch a database are synchronous and run in a worker thread; the
live hub is read on the event loop (it is only ever written there), so each view is
split into a part that reads the hub and a part that reads the databases.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trellis.alerts.metrics import DAY_MS, AlertMetrics, GroupBy
from trellis.alerts.reports import alert_metrics
from trellis.alerts.service import LABEL_MARGIN_MS
from trellis.alerts.timeline import AlertEvent
from trellis.core.types import Alert, AlertSeverity, AlertStatus, Device, Reading
from trellis.devices.models import DeviceModel
from trellis.platform import Platform
from trellis.store.base import Aggregate

__all__ = [
    "ALERT_PAGE_SIZE",
    "CHART_MAX_POINTS",
    "CHART_WINDOW_MS",
    "FLEET_PAGE_SIZE",
    "OPEN_STATUSES",
    "SEVERITIES",
    "VENDOR_DIR",
    "VENDOR_FILES",
    "AlertDetailView",
    "AlertsView",
    "DeviceView",
    "FleetView",
    "MetricValue",
    "MetricsView",
    "Series",
    "format_age",
    "format_value",
    "missing_assets",
    "unit_label",
]

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
#: The files ``scripts/copy_assets.py`` puts in ``static/vendor/`` (``make assets``).
VENDOR_FILES = (
    "htmx.min.js",
    "uPlot.iife.min.js",
    "uPlot.min.css",
    "echarts.min.js",
    "drawflow.min.js",
    "drawflow.min.css",
)

FLEET_PAGE_SIZE = 50
ALERT_PAGE_SIZE = 50
#: The device page charts this much history, seeded from the store.
CHART_WINDOW_MS = 15 * 60_000
#: At most this many points per series are sent with the page; denser history is
#: averaged into time buckets so a 1 kHz sensor does not ship a megabyte of JSON.
CHART_MAX_POINTS = 1_200
#: Open alerts counted for the fleet page; beyond this the counts say "at least".

OPEN_STATUSES = frozenset({AlertStatus.ACTIVE, AlertStatus.CLEARED})
SEVERITIES = tuple(AlertSeverity)

# UCUM codes as devices send them, and what a person reads.
_UNIT_LABELS = {"Cel": "°C", "[degF]": "°F", "K": "K", "count": "", "1": "", "%": "%"}


def missing_assets(vendor_dir: Path | None = None) -> list[str]:
    """Vendored browser libraries that are not installed (run ``make assets``)."""
    directory = VENDOR_DIR if vendor_dir is None else vendor_dir
    return [name for name in VENDOR_FILES if not (directory / name).is_file()]


def unit_label(unit: str | None) -> str:
    """The unit as shown next to a value: ``Cel`` becomes ``°C``."""
    if not unit:
        return ""
    return _UNIT_LABELS.get(unit, unit)


def format_value(value: float) -> str:
    """A reading for people: three or four significant digits, no exponent."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    magnitude = abs(value)
    decimals = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    return f"{value:.{decimals}f}"


def format_age(ts_ms: int | None, now_ms: int) -> str:
    """How long ago ``ts_ms`` was: ``4 s``, ``12 min``, ``3 h``, ``2 d``; ``never``."""
    if ts_ms is None:
        return "never"
    seconds = max(0, (now_ms - ts_ms) // 1000)
    if seconds < 2:
        return "just now"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7_200:
        return f"{seconds // 60} min ago"
    if seconds < 172_800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} d ago"


@dataclass(frozen=True, slots=True)
class MetricValue:
    """The newest value of one metric of a device."""

    metric: str
    value: float
    unit: str
    ts: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One line of the fleet table."""

    device: Device
    last_seen: int | None
    values: list[MetricValue]
    open_alerts: int


@dataclass(frozen=True, slots=True)
class FleetView:
    """The fleet page: a page of devices, their latest values, alert counts."""

    rows: list[DeviceRow]
    total_devices: int
    matching_devices: int
    page: int
    pages: int
    query: str
    readings_per_s: float
    open_by_severity: dict[str, int]
    open_alerts: int
    now_ms: int

    def chart_data(self) -> dict[str, object]:
        """What the overview charts draw, refreshed with every poll of the table."""
        return {
            "at": self.now_ms,
            "readings_per_s": round(self.readings_per_s, 1),
            "severities": list(self.open_by_severity),
            "open_by_severity": list(self.open_by_severity.values()),
        }


@dataclass(frozen=True, slots=True)
class Series:
    """One metric's chart: recent history as parallel arrays, as uPlot wants them."""

    metric: str
    unit: str
    description: str
    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    bucket_ms: int | None = None

    def as_json(self) -> dict[str, object]:
        """The series for the page's embedded JSON."""
        return {
            "metric": self.metric,
            "unit": self.unit,
            "ts": self.ts,
            "values": self.values,
            "bucket_ms": self.bucket_ms,
        }


@dataclass(frozen=True, slots=True)
class DeviceView:
    """The device page: header, latest values, charts, the device's alerts."""

    device: Device
    model: DeviceModel | None
    last_seen: int | None
    values: list[MetricValue]
    series: list[Series]
    alerts: list[Alert]
    now_ms: int

    def chart_data(self, stream_url: str) -> dict[str, object]:
        """The charts' seed and where their live points come from."""
        since = max((s.ts[-1] for s in self.series if s.ts), default=self.now_ms)
        return {
            "window_ms": CHART_WINDOW_MS,
            "max_points": 10 * CHART_MAX_POINTS,
            "stream": f"{stream_url}?since={since}",
            "series": [s.as_json() for s in self.series],
        }


@dataclass(frozen=True, slots=True)
class AlertsView:
    """The alert inbox: one page of alerts under a filter tab."""

    alerts: list[Alert]
    status: str
    offset: int
    more: bool
    now_ms: int
    site: str = ""


def _metric_order(model: DeviceModel | None, metrics: Iterable[str]) -> list[str]:
    known = list(model.metrics) if model else []
    return known + sorted(set(metrics) - set(known))


def _values(
    model: DeviceModel | None, latest: Mapping[str, tuple[int, float, str | None]]
) -> list[MetricValue]:
    out = []
    for metric in _metric_order(model, latest):
        if metric in latest:
            ts, value, unit = latest[metric]
            spec = model.metrics.get(metric) if model else None
            if unit is None and spec is not None:
                unit = spec.unit
            description = spec.description if spec else ""
            out.append(MetricValue(metric, value, unit_label(unit), ts, description))
    return out


LiveLatest = dict[str, dict[str, Reading]]


def live_latest(platform: Platform, devices: Iterable[str]) -> LiveLatest:
    """The live hub's newest readings of ``devices``; call on the event loop."""
    live = platform.live
    return {device: live.latest(platform.tenant, device) for device in devices}


def _merge_latest(
    platform: Platform, device: str, live: Mapping[str, Reading]
) -> dict[str, tuple[int, float, str | None]]:
    """Live values, completed from the store for metrics not seen since start."""
    merged = {metric: (r.ts, r.value, r.unit) for metric, r in live.items()}
    if not live:  # after a restart, or a device that has gone quiet
        for stored in platform.store.latest(platform.tenant, device):
            merged.setdefault(stored.metric, (stored.ts, stored.value, stored.unit))
    return merged


def fleet_devices(platform: Platform, query: str, page: int) -> tuple[list[Device], int, int, int]:
    """The page of devices matching ``query``: ``(devices, matching, total, pages)``."""
    devices = platform.registry.find(platform.tenant)
    total = len(devices)
    needle = query.strip().casefold()
    if needle:
        devices = [
            d for d in devices if any(needle in text.casefold() for text in (d.id, d.name, d.site))
        ]
    pages = max(1, math.ceil(len(devices) / FLEET_PAGE_SIZE))
    page = min(max(page, 1), pages)
    start = (page - 1) * FLEET_PAGE_SIZE
    return devices[start : start + FLEET_PAGE_SIZE], len(devices), total, pages


def fleet_view(
    platform: Platform,
    *,
    devices: list[Device],
    matching: int,
    total: int,
    page: int,
    pages: int,
    query: str,
    live: LiveLatest,
    readings_per_s: float,
    now_ms: int,
) -> FleetView:
    """Build the fleet page from the device page and the hub's values (in a thread)."""
    per_device: Counter[str] = Counter()
    per_severity: Counter[AlertSeverity] = Counter()
    for device_id, severity, count in platform.alerts.open_counts(platform.tenant):
        per_device[device_id] += count
        per_severity[severity] += count
    rows = []
    for device in devices:
        model = platform.registry.models.get(device.model)
        latest = _merge_latest(platform, device.id, live.get(device.id, {}))
        last_seen = max((ts for ts, _, _ in latest.values()), default=None)
        rows.append(DeviceRow(device, last_seen, _values(model, latest), per_device[device.id]))
    return FleetView(
        rows=rows,
        total_devices=total,
        matching_devices=matching,
        page=min(max(page, 1), pages),
        pages=pages,
        query=query,
        readings_per_s=readings_per_s,
        open_by_severity={s.value: per_severity[s] for s in SEVERITIES},
        open_alerts=sum(per_severity.values()),
        now_ms=now_ms,
    )


def seed_series(
    platform: Platform, device: str, metric: str, unit: str, description: str, end_ms: int
) -> Series:
    """The last :data:`CHART_WINDOW_MS` of one metric, raw when sparse, averaged when dense."""
    start_ms = end_ms - CHART_WINDOW_MS
    tenant = platform.tenant
    points = platform.store.query(tenant, device, metric, start_ms, end_ms, CHART_MAX_POINTS + 1)
    if len(points) <= CHART_MAX_POINTS:
        return Series(metric, unit, description, [p.ts for p in points], [p.value for p in points])
    bucket_ms = math.ceil(CHART_WINDOW_MS / CHART_MAX_POINTS)
    buckets = platform.store.aggregate(
        tenant, device, metric, start_ms, end_ms, bucket_ms, Aggregate.AVG
    )
    return Series(
        metric,
        unit,
        description,
        [b.start for b in buckets],
        [b.value for b in buckets],
        bucket_ms=bucket_ms,
    )


def device_view(
    platform: Platform, device: Device, live: Mapping[str, Reading], now_ms: int
) -> DeviceView:
    """Build the device page (in a thread): latest values, chart seeds, alerts."""
    model = platform.registry.models.get(device.model)
    latest = _merge_latest(platform, device.id, live)
    values = _values(model, latest)
    units = {v.metric: (v.unit, v.description) for v in values}
    series = []
    order = _metric_order(model, latest)
    # Charts for what the device reports; a device that has sent nothing yet gets its
    # model's charts, empty, to fill live.
    for metric in [m for m in order if m in latest] or order:
        spec = model.metrics.get(metric) if model else None
        unit, description = units.get(
            metric, (unit_label(spec.unit) if spec else "", spec.description if spec else "")
        )
        series.append(seed_series(platform, device.id, metric, unit, description, now_ms + 1))
    alerts = platform.alerts.find(platform.tenant, device=device.id, limit=20)
    return DeviceView(
        device=device,
        model=model,
        last_seen=max((ts for ts, _, _ in latest.values()), default=None),
        values=values,
        series=series,
        alerts=alerts,
        now_ms=now_ms,
    )


def alerts_view(
    platform: Platform, status: str, offset: int, now_ms: int, site: str = ""
) -> AlertsView:
    """One page of the inbox; ``status`` is ``open`` (most severe first) or ``all``
    (newest first), in a thread."""
    open_only = status == "open"
    found = platform.alerts.find(
        platform.tenant,
        statuses=set(OPEN_STATUSES) if open_only else None,
        by_severity=open_only,
        site=site or None,
        limit=ALERT_PAGE_SIZE + 1,
        offset=offset,
    )
    return AlertsView(
        alerts=found[:ALERT_PAGE_SIZE],
        status=status,
        offset=offset,
        more=len(found) > ALERT_PAGE_SIZE,
        now_ms=now_ms,
        site=site,
    )


@dataclass(frozen=True, slots=True)
class AlertDetailView:
    """One alert: its card, its timeline, the readings around it."""

    alert: Alert
    timeline: list[AlertEvent]
    series: Series | None
    window: tuple[int, int]
    now_ms: int

    def chart_data(self) -> dict[str, object]:
        """The chart's points and the instants to mark (raise, clear, resolve)."""
        a = self.alert
        marks = [("raised", a.raised_ms), ("cleared", a.cleared_ms), ("resolved", a.resolved_ms)]
        return {
            "series": self.series.as_json() if self.series else None,
            "window": list(self.window),
            "marks": [{"label": k, "ts": ts} for k, ts in marks if ts is not None],
        }


def alert_detail_view(platform: Platform, alert_id: int, now_ms: int) -> AlertDetailView:
    """The alert page (in a thread): the readings window is the label's window."""
    alert = platform.alerts.get(platform.tenant, alert_id)
    end = alert.resolved_ms or alert.cleared_ms or now_ms
    window = (alert.raised_ms - LABEL_MARGIN_MS, min(now_ms, end + LABEL_MARGIN_MS) + 1)
    series = None
    if alert.metric:
        points = platform.store.query(
            platform.tenant, alert.device, alert.metric, *window, CHART_MAX_POINTS + 1
        )
        if len(points) <= CHART_MAX_POINTS:
            ts, values = [p.ts for p in points], [p.value for p in points]
            series = Series(alert.metric, "", "", ts, values)
        else:
            bucket = math.ceil((window[1] - window[0]) / CHART_MAX_POINTS)
            buckets = platform.store.aggregate(
                platform.tenant, alert.device, alert.metric, *window, bucket, Aggregate.AVG
            )
            series = Series(
                alert.metric,
                "",
                "",
                [b.start for b in buckets],
                [b.value for b in buckets],
                bucket_ms=bucket,
            )
    timeline = platform.alerts.timeline(platform.tenant, alert_id)
    return AlertDetailView(alert, timeline, series, window, now_ms)


#: The periods the metrics page offers, in days.
METRIC_PERIODS = (1, 7, 30, 90)


@dataclass(frozen=True, slots=True)
class MetricsView:
    """The metrics page: the period's figures, per rule, per site, and per day."""

    days: int
    overall: AlertMetrics | None
    by_rule: list[AlertMetrics]
    by_site: list[AlertMetrics]
    by_day: list[AlertMetrics]
    now_ms: int

    def chart_data(self) -> dict[str, object]:
        """What the ECharts draw: daily trends and per-rule comparisons."""
        return {
            "days": [int(m.group) for m in self.by_day],
            "mtta_s": [m.mtta_s for m in self.by_day],
            "mttr_s": [m.mttr_s for m in self.by_day],
            "false_alert_rate": [m.false_alert_rate for m in self.by_day],
            "hitl": [m.hitl_resolution_ratio for m in self.by_day],
            "alerts": [m.alerts for m in self.by_day],
            "rules": [m.group for m in self.by_rule],
            "rule_alerts": [m.alerts for m in self.by_rule],
            "rule_false": [m.false_positives for m in self.by_rule],
        }


def metrics_view(platform: Platform, days: int, now_ms: int) -> MetricsView:
    """Metrics of the alerts raised in the last ``days`` days (in a thread)."""
    end = now_ms + 1
    start = end - days * DAY_MS

    def of(by: GroupBy) -> list[AlertMetrics]:
        return alert_metrics(platform.engine, platform.tenant, by, start, end)

    overall = of(GroupBy.NONE)
    return MetricsView(
        days=days,
        overall=overall[0] if overall else None,
        by_rule=of(GroupBy.RULE),
        by_site=of(GroupBy.SITE),
        by_day=of(GroupBy.DAY),
        now_ms=now_ms,
    )
