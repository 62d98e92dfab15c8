"""Dry run: what a rule would have done over a stored time range, without writing alerts.

The rule is compiled fresh and fed each matching device's stored readings in event
order through the same runtime the engine uses, then time is advanced to the end of
the range so heartbeats and sessions close. The result carries the readings of the
devices that fired (for a chart) and every raise and clear with its time.
"""

from __future__ import annotations

import re

import msgspec

from trellis.core.clock import now_ms
from trellis.devices.registry import DeviceRegistry
from trellis.rules.engine import resolve_series
from trellis.rules.runtime import SeriesState, Signal, compile_rule, series_key
from trellis.rules.store import AnyRule
from trellis.semantic.store import SemanticModel
from trellis.store.base import Point, TimeSeriesStore

__all__ = ["DryRun", "DryRunSeries", "DryRunSignal", "dry_run", "parse_since"]

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class DryRunSignal(msgspec.Struct, frozen=True):
    """One transition the rule would have made."""

    kind: str
    device: str
    ts: int
    value: float | None
    message: str


class DryRunSeries(msgspec.Struct, frozen=True):
    """The readings of one device that fired, for the chart."""

    device: str
    points: list[Point]


class DryRun(msgspec.Struct, frozen=True):
    """What :func:`dry_run` found."""

    rule: str
    metric: str
    start: int
    end: int
    devices: int
    readings: int
    signals: list[DryRunSignal]
    series: list[DryRunSeries]
    suppressed: int
    late: int


def parse_since(text: str, now: int | None = None) -> int:
    """``-24h``, ``-30m``, ``-7d`` or ``-90s`` before ``now``; ``ValueError`` otherwise."""
    match = _RELATIVE.match(text.strip())
    if match is None:
        raise ValueError(f"since {text!r}: write a negative duration like -24h, -30m, -7d, -90s")
    return (now if now is not None else now_ms()) - round(
        float(match.group(1)) * _UNIT_MS[match.group(2)]
    )


def dry_run(
    rule: AnyRule,
    store: TimeSeriesStore,
    registry: DeviceRegistry,
    tenant: str,
    start: int,
    end: int,
    *,
    per_device_limit: int = 100_000,
    chart_devices: int = 10,
    semantic: SemanticModel | None = None,
) -> DryRun:
    """Replay ``[start, end)`` of every device the rule selects through the rule; a point
    selector (Brick class, place) replays each selected series, resolved by ``semantic``."""
    compiled = compile_rule(rule)
    devices = [d for d in registry.find(tenant) if compiled.matches(d)]
    targets = [(d, compiled.metric, d.id) for d in devices]
    if compiled.series is not None:
        picked = resolve_series(semantic, registry, tenant, compiled) if semantic else set()
        by_id = {d.id: d for d in devices}
        targets = [
            (by_id[device], metric, series_key(device, metric))
            for device, metric in sorted(picked)
            if device in by_id
        ]
        devices = list({id(t[0]): t[0] for t in targets}.values())
    signals: list[Signal] = []
    series: list[DryRunSeries] = []
    readings = 0
    for device, metric, key in targets:
        points = store.query(tenant, device.id, metric, start, end, per_device_limit)
        if not points:
            continue
        readings += len(points)
        state = SeriesState()
        before = len(signals)
        for point in points:
            compiled.feed(state, tenant, key, device, point.ts, point.value, signals)
        compiled.tick(state, tenant, key, end, signals)
        if len(signals) > before and len(series) < chart_devices:
            series.append(DryRunSeries(device.id, points))
    signals.sort(key=lambda s: (s.ts, s.device))
    return DryRun(
        rule=compiled.id,
        metric=compiled.metric,
        start=start,
        end=end,
        devices=len(devices),
        readings=readings,
        signals=[DryRunSignal(s.kind, s.device, s.ts, s.value, s.message) for s in signals],
        series=series,
        suppressed=compiled.suppressed,
        late=compiled.late,
    )
