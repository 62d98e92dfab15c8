"""One runtime for every rule: threshold rules and stream rules compile to :class:`CompiledRule`.

A compiled rule advances a :class:`SeriesState` (one per rule and device) over
readings in event time and appends :class:`Signal` s (raise, clear) to a list. It does
no I/O, so the same code runs live in the engine, in a dry run over stored data and
in tests with exact timestamps. The state is a msgspec struct so the engine can
checkpoint it and a restart continues where it stopped.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from trellis.core.types import AlertSeverity, Device
from trellis.rules.model import ThresholdRule
from trellis.rules.spec import (
    CompiledExpression,
    ModelUse,
    Selector,
    StreamRule,
    compile_condition,
)

__all__ = [
    "CompiledRule",
    "Predictions",
    "SeriesState",
    "Signal",
    "aggregate",
    "compile_rule",
    "series_key",
]

Predicate = Callable[[dict[str, Any]], bool]
#: ``(tenant, device) -> outputs`` of the rule's model, or ``None`` when there is none yet.
Predictions = Callable[[str, str], Mapping[str, float] | None]
_PREDICTION_FIELD = re.compile(r"\bprediction\.([A-Za-z_][A-Za-z0-9_]*)")


class SeriesState(msgspec.Struct):
    """Where one rule stands for one device; what a checkpoint stores."""

    last_ts: int = -1
    watermark: int = -1
    pending: list[tuple[int, float]] = []
    points: list[tuple[int, float]] = []
    bucket: int = -1
    raised: bool = False
    suppressed: bool = False
    since_ms: int = -1
    clear_since_ms: int = -1
    armed_ms: int = -1


@dataclass(frozen=True, slots=True)
class Signal:
    """A transition the engine turns into an alert and actions; ``metric`` is the series'
    (a rule that selects points by Brick class judges several metrics)."""

    kind: Literal["raise", "clear"]
    rule: CompiledRule
    tenant: str
    device: str
    ts: int
    value: float | None
    message: str
    metric: str = ""


def aggregate(name: str, points: list[tuple[int, float]]) -> float:
    """One window aggregate over ``(ts, value)`` points in time order."""
    n = len(points)
    if name == "count":
        return float(n)
    if n == 0:
        return math.nan
    if name == "last":
        return points[-1][1]
    if name == "first":
        return points[0][1]
    values = [v for _, v in points]
    if name == "sum":
        return math.fsum(values)
    if name == "avg":
        return math.fsum(values) / n
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    if name == "stddev":
        mean = math.fsum(values) / n
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    if name == "rate":
        span_ms = points[-1][0] - points[0][0]
        return (points[-1][1] - points[0][1]) * 1000.0 / span_ms if span_ms else 0.0
    # pNN, linear interpolation between closest ranks
    ordered = sorted(values)
    rank = float(name[1:]) / 100.0 * (n - 1)
    low = int(rank)
    high = min(low + 1, n - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def series_key(device_id: str, metric: str) -> str:
    """The state key of one series of a rule that selects points: ``device#metric``
    (``#`` cannot be in a device id: it is an MQTT wildcard)."""
    return f"{device_id}#{metric}"


def _selector(select: Selector) -> Callable[[Device | None], bool]:
    models, sites, devices = set(select.models), set(select.sites), set(select.devices)
    # Tags of a point selector may be the points' own; the engine checks them.
    tags = set() if select.semantic else set(select.tags)
    attributes = dict(select.attributes)
    if not (models or sites or devices or tags or attributes):
        return lambda _device: True

    def matches(device: Device | None) -> bool:
        if device is None:
            return False
        if models and device.model not in models:
            return False
        if sites and device.site not in sites:
            return False
        if devices and device.id not in devices:
            return False
        if tags and not tags.issubset(_tags(device)):
            return False
        return all(device.attributes.get(k) == v for k, v in attributes.items())

    return matches


def _tags(device: Device | None) -> list[str]:
    if device is None:
        return []
    found = device.attributes.get("tags")
    return [str(tag) for tag in found] if isinstance(found, list) else []


def _cel(expression: CompiledExpression) -> Predicate:
    program = expression.program
    return lambda context: bool(program.execute(context))


def _number(expression: CompiledExpression) -> Callable[[dict[str, Any]], float]:
    program = expression.program
    return lambda context: float(program.execute(context))


class CompiledRule:
    """A rule ready to run: predicates compiled once, parameters in milliseconds."""

    def __init__(
        self,
        *,
        id: str,
        title: str,
        metric: str,
        severity: AlertSeverity,
        select: Selector,
        condition: Predicate | None,
        release: Predicate | None,
        then: Predicate | None = None,
        where: Predicate | None = None,
        transform: Callable[[dict[str, Any]], float] | None = None,
        needs: frozenset[str] = frozenset(),
        aggregates: tuple[str, ...] = (),
        window: tuple[str, int] | None = None,
        for_ms: int = 0,
        debounce_ms: int = 0,
        absence_ms: int | None = None,
        within_ms: int = 0,
        lateness_ms: int = 0,
        max_alerts_per_s: float = 100.0,
        model: ModelUse | None = None,
        outputs: tuple[str, ...] = (),
        definition: ThresholdRule | StreamRule,
    ) -> None:
        self.id = id
        self.title = title
        self.metric = metric
        self.severity = severity
        self.matches = _selector(select)
        self.select = select
        #: For a rule selecting points (by Brick class or place): the ``(device, metric)``
        #: series it judges, resolved by the engine from the semantic model.
        self.series: frozenset[tuple[str, str]] | None = frozenset() if select.semantic else None
        self.definition = definition
        self._condition = condition
        self._release = release
        self._then = then
        self._where = where
        self._transform = transform
        #: The last judgements ``(device, ts, value, holds)`` while someone watches.
        self.trace: collections.deque[tuple[str, int, float, bool]] | None = None
        self._needs = needs
        self._device_vars = bool(needs - {"value", "window", "prediction"})
        #: The model the conditions read as ``prediction``, and the outputs they name.
        self.model = model
        self.outputs = outputs
        #: Where predictions come from; set by the engine. Without it (dry runs, flow
        #: tests) every output reads the model's fallback.
        self.predictions: Predictions | None = None
        self.fallbacks = 0
        self._aggregates = aggregates
        self.window = window
        self._for_ms = for_ms
        self._debounce_ms = debounce_ms
        self.absence_ms = absence_ms
        self._within_ms = within_ms
        self.lateness_ms = lateness_ms
        #: Whether time passing alone can change it (heartbeats, session windows).
        self.timed = absence_ms is not None or (window is not None and window[0] == "session")
        self._rate = max_alerts_per_s
        self._tokens = max(1.0, max_alerts_per_s)
        self._tokens_ts = -1
        self.suppressed = 0
        self.late = 0

    # -- feeding ------------------------------------------------------------------

    def feed(
        self,
        state: SeriesState,
        tenant: str,
        device_id: str,
        device: Device | None,
        ts: int,
        value: float,
        out: list[Signal],
    ) -> None:
        """Take one reading; readings within the lateness allowance are judged in order."""
        if ts <= state.last_ts:
            self.late += 1
            return
        if self.absence_ms is not None:
            state.last_ts = ts
            if state.raised:
                self._transition(state, "clear", tenant, device_id, ts, value, out)
            return
        if not self.lateness_ms:
            state.last_ts = ts
            self._step(state, tenant, device_id, device, ts, value, out)
            return
        pending = state.pending
        at = bisect.bisect_left(pending, (ts, -math.inf))
        if at < len(pending) and pending[at][0] == ts:
            self.late += 1  # a duplicate of a held reading
            return
        pending.insert(at, (ts, value))
        state.watermark = max(state.watermark, ts)
        horizon = state.watermark - self.lateness_ms
        released = 0
        for point_ts, point_value in pending:
            if point_ts > horizon:
                break
            released += 1
            state.last_ts = point_ts
            self._step(state, tenant, device_id, device, point_ts, point_value, out)
        del pending[:released]

    def tick(
        self, state: SeriesState, tenant: str, device_id: str, now_ms: int, out: list[Signal]
    ) -> None:
        """Let time pass without data: heartbeats fire, sessions close."""
        if self.absence_ms is not None:
            due = state.last_ts + self.absence_ms
            if not state.raised and state.last_ts >= 0 and now_ms >= due:
                self._transition(state, "raise", tenant, device_id, due, None, out)
        elif self.window is not None and self.window[0] == "session" and state.points:
            close = state.points[-1][0] + self.window[1]
            if now_ms - self.lateness_ms >= close:
                self._close(state, tenant, device_id, None, close, out)

    # -- judging ------------------------------------------------------------------

    def _step(
        self,
        state: SeriesState,
        tenant: str,
        device_id: str,
        device: Device | None,
        ts: int,
        value: float,
        out: list[Signal],
    ) -> None:
        if self._where is not None or self._transform is not None:
            context = self._context(tenant, device_id, device, ts, value, None)
            if self._where is not None and not self._where(context):
                return
            if self._transform is not None:
                value = self._transform(context)
        if self.window is None:
            self._judge(state, tenant, device_id, device, ts, value, None, out)
            return
        kind, span = self.window
        points = state.points
        if kind == "sliding":
            points.append((ts, value))
            cut = bisect.bisect_right(points, (ts - span, math.inf))
            if cut:
                del points[:cut]
            self._judge(state, tenant, device_id, device, ts, value, points, out)
        elif kind == "tumbling":
            bucket = ts - ts % span
            if state.bucket != bucket:
                if points:
                    self._close(state, tenant, device_id, device, state.bucket + span, out)
                state.bucket = bucket
            state.points.append((ts, value))  # a new list when the bucket closed
        else:  # session
            if points and ts - points[-1][0] >= span:
                self._close(state, tenant, device_id, device, points[-1][0] + span, out)
            state.points.append((ts, value))

    def _close(
        self,
        state: SeriesState,
        tenant: str,
        device_id: str,
        device: Device | None,
        at: int,
        out: list[Signal],
    ) -> None:
        points = state.points
        state.points = []
        self._judge(state, tenant, device_id, device, at, points[-1][1], points, out)

    def _context(
        self,
        tenant: str,
        device_id: str,
        device: Device | None,
        ts: int,
        value: float,
        points: list[tuple[int, float]] | None,
    ) -> dict[str, Any]:
        needs = self._needs
        context: dict[str, Any] = {"value": float(value)}
        if points is not None and "window" in needs:
            context["window"] = {name: aggregate(name, points) for name in self._aggregates}
        if self.model is not None:
            context["prediction"] = self._prediction(tenant, device_id)
        if self._device_vars:
            device_id, _, metric = device_id.partition("#")
            context.update(
                metric=metric or self.metric,
                device=device_id,
                ts=ts,
                site=device.site if device else "",
                model=device.model if device else "",
                attrs=device.attributes if device else {},
                tags=_tags(device),
            )
        return context

    def _prediction(self, tenant: str, device_id: str) -> dict[str, float]:
        assert self.model is not None
        fallback = self.model.fallback
        got = self.predictions(tenant, device_id) if self.predictions is not None else None
        if got is None:
            self.fallbacks += 1
            return dict.fromkeys(self.outputs, fallback)
        return {name: float(got.get(name, fallback)) for name in self.outputs}

    def _judge(
        self,
        state: SeriesState,
        tenant: str,
        device_id: str,
        device: Device | None,
        ts: int,
        value: float,
        points: list[tuple[int, float]] | None,
        out: list[Signal],
    ) -> None:
        context = self._context(tenant, device_id, device, ts, value, points)
        assert self._condition is not None
        holds = self._condition(context)
        if self.trace is not None:
            self.trace.append((device_id, ts, value, holds))
        if not state.raised:
            if self._then is not None:
                if state.armed_ms >= 0 and ts - state.armed_ms > self._within_ms:
                    state.armed_ms = -1
                if state.armed_ms >= 0 and self._then(context):
                    state.armed_ms = -1
                    self._transition(state, "raise", tenant, device_id, ts, value, out)
                elif holds:
                    state.armed_ms = ts
                return
            if holds:
                if state.since_ms < 0:
                    state.since_ms = ts
                if ts - state.since_ms >= max(self._for_ms, self._debounce_ms):
                    self._transition(state, "raise", tenant, device_id, ts, value, out)
            else:
                state.since_ms = -1
            return
        if self._release is not None:
            released = self._release(context)
        elif self._then is not None:
            released = not self._then(context)
        else:
            released = not holds
        if not released:
            state.clear_since_ms = -1
            return
        if state.clear_since_ms < 0:
            state.clear_since_ms = ts
        if ts - state.clear_since_ms >= self._debounce_ms:
            self._transition(state, "clear", tenant, device_id, ts, value, out)

    def _transition(
        self,
        state: SeriesState,
        kind: Literal["raise", "clear"],
        tenant: str,
        device_id: str,
        ts: int,
        value: float | None,
        out: list[Signal],
    ) -> None:
        state.since_ms = state.clear_since_ms = -1
        device_id, _, metric = device_id.partition("#")
        metric = metric or self.metric
        if kind == "clear":
            state.raised = False
            if state.suppressed:
                state.suppressed = False  # its raise was never written
                return
            message = self._message(value, metric)
            out.append(Signal("clear", self, tenant, device_id, ts, value, message, metric))
            return
        state.raised = True
        if not self._take_token(ts):
            state.suppressed = True
            self.suppressed += 1
            return
        message = self._message(value, metric)
        out.append(Signal("raise", self, tenant, device_id, ts, value, message, metric))

    def _take_token(self, ts: int) -> bool:
        """Token bucket in event time, so a storm in a replay is limited the same way."""
        if self._tokens_ts >= 0 and ts > self._tokens_ts:
            refill = (ts - self._tokens_ts) / 1000.0 * self._rate
            self._tokens = min(max(1.0, self._rate), self._tokens + refill)
        self._tokens_ts = max(self._tokens_ts, ts)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _message(self, value: float | None, metric: str) -> str:
        definition = self.definition
        if isinstance(definition, ThresholdRule):
            return f"{metric} = {value:g} {definition.op} {definition.threshold:g}" + (
                f" for {definition.for_s:g} s" if definition.for_s else ""
            )
        if value is None:
            return self.title
        return f"{self.title} ({metric} = {value:g})"


def compile_rule(rule: ThresholdRule | StreamRule) -> CompiledRule:
    """Compile a rule once; the result is reused for every reading."""
    if isinstance(rule, ThresholdRule):
        return CompiledRule(
            id=rule.id,
            title=rule.title,
            metric=rule.metric,
            severity=rule.severity,
            select=msgspec.structs.replace(
                rule.select, models=[*rule.select.models, *([rule.model] if rule.model else [])]
            ),
            condition=lambda context: rule.trips(context["value"]),
            release=lambda context: not rule.holds(context["value"]),
            for_ms=round(rule.for_s * 1000),
            definition=rule,
        )
    windowed = rule.window is not None
    modelled = rule.model is not None
    condition = (
        compile_condition(rule.condition, "condition", windowed=windowed, modelled=modelled)
        if rule.condition
        else None
    )
    clear = (
        compile_condition(rule.clear, "clear", windowed=windowed, modelled=modelled)
        if rule.clear
        else None
    )
    then = (
        compile_condition(rule.sequence.then, "sequence.then", windowed=windowed, modelled=modelled)
        if rule.sequence
        else None
    )
    where = compile_condition(rule.where, "where", windowed=False) if rule.where else None
    transform = (
        compile_condition(rule.transform, "transform", windowed=False, number=True)
        if rule.transform
        else None
    )
    expressions = [e for e in (condition, clear, then, where, transform) if e is not None]
    needs = frozenset().union(*(e.variables for e in expressions)) | {"value"}
    aggregates = tuple(sorted({a for e in expressions for a in e.aggregates}))
    outputs = tuple(sorted({o for e in expressions for o in _PREDICTION_FIELD.findall(e.source)}))
    window = None
    if rule.window is not None:
        span = rule.window.gap_s if rule.window.kind == "session" else rule.window.size_s
        window = (rule.window.kind, round(span * 1000))
    return CompiledRule(
        id=rule.id,
        title=rule.title,
        metric=rule.metric,
        severity=rule.severity,
        select=rule.select,
        condition=_cel(condition) if condition else None,
        release=_cel(clear) if clear else None,
        then=_cel(then) if then else None,
        where=_cel(where) if where else None,
        transform=_number(transform) if transform else None,
        needs=needs,
        aggregates=aggregates,
        window=window,
        for_ms=round(rule.for_s * 1000),
        debounce_ms=round(rule.debounce_s * 1000),
        absence_ms=round(rule.absence_s * 1000) if rule.absence_s is not None else None,
        within_ms=round(rule.sequence.within_s * 1000) if rule.sequence else 0,
        lateness_ms=round(rule.lateness_s * 1000),
        max_alerts_per_s=rule.max_alerts_per_s,
        model=rule.model,
        outputs=outputs,
        definition=rule,
    )
