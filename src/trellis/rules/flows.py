"""Flows: a DAG of typed nodes, stored as JSON, compiled to stream rules (one engine).

A flow is what the visual editor draws and what lives in git as text::

    {"id": "chiller-drift", "nodes": [
       {"id": "supply", "type": "source", "metric": "temperature", "select": {"models": ["pump"]}},
       {"id": "hot", "type": "condition", "condition": "value > 80.0", "for_s": 10},
       {"id": "page", "type": "alert", "severity": "major"}],
     "edges": [["supply", "hot"], ["hot", "page"]],
     "tests": [{"name": "ten hot seconds page", "readings": [["pump-1", 0, 90], ...],
                "expect": [["raise", "pump-1", 10, "hot"]]}]}

Wires are typed: a source feeds filters, a transform, a window, a model or a
condition; a filter feeds the same; a transform feeds a window, a model or a
condition; a window feeds a model or a condition; a model feeds a condition (which
reads its outputs as ``prediction.<output>``); a condition feeds alert, webhook,
command, desired-state, emit and predict nodes. Every condition compiles, with the chain above
it, to one :class:`StreamRule` named ``flow.<flow>.<condition>``; deploying a flow
saves those rules, so flows and rules share the runtime, the stats and the dead
letters.

A ``subflow`` node includes another saved flow, pinned as ``name@version`` (versions
never change), optionally narrowed to other devices by its own selector. Its
conditions compile into this flow's rules as ``flow.<flow>.<node>.<condition>``. A
chain of sub-flows that leads back to a flow already on it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from trellis.core.types import AlertSeverity, Device
from trellis.rules.locate import with_line
from trellis.rules.runtime import SeriesState, Signal, compile_rule
from trellis.rules.spec import (
    MAX_WINDOW_S,
    Action,
    CommandAction,
    DesiredStateAction,
    EmitAction,
    ModelUse,
    PredictAction,
    Selector,
    Sequence,
    StreamRule,
    Transition,
    WebhookAction,
    Window,
)
from trellis.rules.text import Format, dump, load

__all__ = [
    "AlertNode",
    "CommandNode",
    "ConditionNode",
    "DesiredNode",
    "EmitNode",
    "FilterNode",
    "Flow",
    "FlowTest",
    "FlowTestResult",
    "ModelNode",
    "PredictNode",
    "Resolver",
    "SourceNode",
    "SubflowNode",
    "TransformNode",
    "WebhookNode",
    "WindowNode",
    "compile_flow",
    "flow_text",
    "parse_flow",
    "rule_id_for",
    "run_flow_tests",
]

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
_REF = re.compile(r"^([a-z0-9][a-z0-9_-]{0,47})@([1-9][0-9]{0,8})$")
#: How deep sub-flows may nest; deeper is refused (it is almost surely a mistake).
MAX_SUBFLOW_DEPTH = 8
#: ``(flow id, version) -> Flow``; raises ``LookupError`` when there is no such version.
Resolver = Callable[[str, int], "Flow"]


class SourceNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="source"
):
    """Readings of one metric from the devices the selector picks."""

    id: str
    metric: str
    select: Selector = Selector()
    lateness_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0


class FilterNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="filter"
):
    """Only readings for which ``where`` (CEL) holds pass."""

    id: str
    where: str


class TransformNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="transform"
):
    """Replace the value by ``expression`` (CEL, a double), e.g. ``value * 1.8 + 32.0``."""

    id: str
    expression: str


class WindowNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="window"
):
    """Aggregate readings over a tumbling, sliding or session window."""

    id: str
    kind: Literal["tumbling", "sliding", "session"]
    size_s: float = 0.0
    gap_s: float = 0.0


class ConditionNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="condition"
):
    """The CEL condition and its temporal operators (see :class:`StreamRule`)."""

    id: str
    condition: str
    clear: str | None = None
    for_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WINDOW_S)] = 0.0
    debounce_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WINDOW_S)] = 0.0
    sequence: Sequence | None = None
    max_alerts_per_s: Annotated[float, msgspec.Meta(gt=0)] = 100.0


class AlertNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="alert"
):
    """Raise and clear an alert of this severity."""

    id: str
    severity: AlertSeverity
    name: str = ""


class WebhookNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="webhook"
):
    """POST each raise and clear; retried with backoff, then dead-lettered."""

    id: str
    url: str
    attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    backoff_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5


class ModelNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="model"
):
    """Predict with model ``model`` (its production version) from the device's latest
    features; the condition it feeds reads ``prediction.<output>`` (see
    :class:`~trellis.rules.spec.ModelUse` for refresh, timeout and fallback)."""

    id: str
    model: str
    fallback: float = 0.0
    refresh_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0


class CommandNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="command"
):
    """Send a device command (MQTT 5 request/response) on the transitions in ``on``."""

    id: str
    name: str
    args: dict[str, Any] = {}
    device: str | None = None
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0


class DesiredNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="desired"
):
    """Merge ``state`` into the device twin's desired state on the transitions in ``on``."""

    id: str
    state: dict[str, Any]
    device: str | None = None
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])


class EmitNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="emit"
):
    """Emit a derived metric of the device back through ingest."""

    id: str
    metric: str
    value: float | None = None
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])


class PredictNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="predict"
):
    """Call model ``model`` on the transitions in ``on`` and emit its ``output`` as the
    derived metric ``emit``."""

    id: str
    model: str
    emit: str
    output: str = "score"
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0


class SubflowNode(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="subflow"
):
    """Another saved flow, ``name@version``, included whole; ``select`` (when given)
    replaces the selectors of its sources."""

    id: str
    flow: str
    select: Selector | None = None


Node = (
    SourceNode
    | FilterNode
    | TransformNode
    | WindowNode
    | ModelNode
    | ConditionNode
    | AlertNode
    | WebhookNode
    | CommandNode
    | DesiredNode
    | EmitNode
    | PredictNode
    | SubflowNode
)

_ACTIONS = (AlertNode, WebhookNode, CommandNode, DesiredNode, EmitNode, PredictNode)
_FEEDS: dict[type[Node], tuple[type[Node], ...]] = {
    SourceNode: (FilterNode, TransformNode, WindowNode, ModelNode, ConditionNode),
    FilterNode: (FilterNode, TransformNode, WindowNode, ModelNode, ConditionNode),
    TransformNode: (WindowNode, ModelNode, ConditionNode),
    WindowNode: (ModelNode, ConditionNode),
    ModelNode: (ConditionNode,),
    ConditionNode: _ACTIONS,
    AlertNode: (),
    WebhookNode: (),
    CommandNode: (),
    DesiredNode: (),
    EmitNode: (),
    PredictNode: (),
    SubflowNode: (),
}


class FlowTest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Readings in (``[device, seconds, value]``) and the transitions expected out
    (``[kind, device, seconds, condition node]``). Device models come from ``devices``
    (id → model, site, attributes) or, by default, from the id before its first dash."""

    name: str
    readings: list[tuple[str, float, float]]
    expect: list[tuple[Literal["raise", "clear"], str, float, str]]
    devices: dict[str, dict[str, Any]] = {}


class Flow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A named DAG of nodes, with its unit tests."""

    id: str
    nodes: list[Node]
    edges: list[tuple[str, str]]
    name: str = ""
    enabled: bool = True
    tests: list[FlowTest] = []
    layout: dict[str, tuple[float, float]] = {}


def rule_id_for(flow_id: str, node_id: str) -> str:
    """The id of the rule a condition node compiles to."""
    return f"flow.{flow_id}.{node_id}"


def _type_name(node_type: type[Node]) -> str:
    return str(node_type.__struct_config__.tag)


def parse_flow(definition: bytes | str | dict[str, Any]) -> Flow:
    """A flow from JSON or YAML text, or a mapping, checked and compiled once;
    ``ValueError`` names the field (``$.nodes[2].condition``, ``$.edges[1]``) and,
    from text, the line."""
    text = None
    if isinstance(definition, bytes | str):
        text = definition.decode(errors="replace") if isinstance(definition, bytes) else definition
        data = load(text, "flow")
    else:
        data = definition
    try:
        flow = msgspec.convert(data, Flow)
        compile_flow(flow)
    except (ValueError, msgspec.ValidationError) as exc:
        message = str(exc) if str(exc).startswith("invalid flow") else f"invalid flow: {exc}"
        raise ValueError(with_line(message, text) if text else message) from None
    return flow


def _check_graph(flow: Flow) -> tuple[dict[str, Node], dict[str, list[str]], dict[str, list[str]]]:
    if not _ID.match(flow.id):
        raise ValueError(f"invalid flow: $.id {flow.id!r}: lowercase letters, digits, '_', '-'")
    nodes: dict[str, Node] = {}
    for index, node in enumerate(flow.nodes):
        if not _ID.match(node.id):
            raise ValueError(
                f"invalid flow: $.nodes[{index}].id {node.id!r}: "
                "lowercase letters, digits, '_', '-'"
            )
        if node.id in nodes:
            raise ValueError(f"invalid flow: $.nodes[{index}].id {node.id!r} is used twice")
        nodes[node.id] = node
    inputs: dict[str, list[str]] = {node: [] for node in nodes}
    outputs: dict[str, list[str]] = {node: [] for node in nodes}
    for index, (source, target) in enumerate(flow.edges):
        for end in (source, target):
            if end not in nodes:
                raise ValueError(f"invalid flow: $.edges[{index}]: unknown node {end!r}")
        a, b = type(nodes[source]), type(nodes[target])
        if b not in _FEEDS[a]:
            allowed = ", ".join(_type_name(t) for t in _FEEDS[a]) or "nothing"
            raise ValueError(
                f"invalid flow: $.edges[{index}]: {_type_name(a)} node {source!r} cannot "
                f"feed {_type_name(b)} node {target!r}; a {_type_name(a)} feeds {allowed}"
            )
        outputs[source].append(target)
        inputs[target].append(source)
    cycle = _find_cycle(outputs)
    if cycle:
        raise ValueError(f"invalid flow: $.edges: cycle {' → '.join(cycle)}")
    return nodes, inputs, outputs


def _find_cycle(outputs: dict[str, list[str]]) -> list[str]:
    """One cycle as a path of node ids (first == last), or ``[]``."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in outputs[node]:
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(outputs):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def compile_flow(
    flow: Flow, resolve: Resolver | None = None, *, _chain: tuple[str, ...] = ()
) -> list[StreamRule]:
    """The stream rules a flow stands for, one per condition node (sub-flows included
    when ``resolve`` can find them); ``ValueError`` if the graph is not a well-typed
    DAG, a node is incomplete, or sub-flows lead back to a flow on the chain."""
    nodes, inputs, outputs = _check_graph(flow)
    chain = (*_chain, flow.id)
    index_of = {node.id: i for i, node in enumerate(flow.nodes)}
    rules: list[StreamRule] = []
    for node in flow.nodes:
        where = f"$.nodes[{index_of[node.id]}] ({node.id})"
        inner = SourceNode | FilterNode | TransformNode | WindowNode | ModelNode
        if isinstance(node, inner) and not outputs[node.id]:
            raise ValueError(f"invalid flow: {where}: its output is not wired to anything")
        if isinstance(node, SubflowNode):
            rules.extend(_subflow(flow, node, where, resolve, chain))
            continue
        if not isinstance(node, ConditionNode):
            continue
        filters: list[str] = []
        window: WindowNode | None = None
        transform: TransformNode | None = None
        model: ModelNode | None = None
        current: Node = node
        while not isinstance(current, SourceNode):
            parents = inputs[current.id]
            if len(parents) != 1:
                raise ValueError(
                    f"invalid flow: {where}: the {_type_name(type(current))} node "
                    f"{current.id!r} needs exactly one input, has {len(parents)}"
                )
            current = nodes[parents[0]]
            if isinstance(current, FilterNode):
                filters.append(f"({current.where})")
            elif isinstance(current, WindowNode):
                window = current
            elif isinstance(current, TransformNode):
                transform = current
            elif isinstance(current, ModelNode):
                model = current
        source = current
        targets = [nodes[n] for n in outputs[node.id]]
        alerts = [n for n in targets if isinstance(n, AlertNode)]
        if len(alerts) != 1:
            raise ValueError(
                f"invalid flow: {where}: a condition leads to exactly one alert node, "
                f"not {len(alerts)}"
            )
        alert = alerts[0]
        try:
            rule = StreamRule(
                id=rule_id_for(flow.id, node.id),
                name=alert.name or flow.name or node.id,
                metric=source.metric,
                severity=alert.severity,
                condition=node.condition,
                where=" && ".join(reversed(filters)) or None,
                transform=transform.expression if transform else None,
                select=source.select,
                window=(
                    Window(kind=window.kind, size_s=window.size_s, gap_s=window.gap_s)
                    if window
                    else None
                ),
                for_s=node.for_s,
                clear=node.clear,
                debounce_s=node.debounce_s,
                sequence=node.sequence,
                lateness_s=source.lateness_s,
                max_alerts_per_s=node.max_alerts_per_s,
                actions=[a for a in map(_action, targets) if a is not None],
                enabled=flow.enabled,
                model=(
                    ModelUse(
                        name=model.model,
                        fallback=model.fallback,
                        refresh_s=model.refresh_s,
                        timeout_s=model.timeout_s,
                    )
                    if model
                    else None
                ),
            )
        except (ValueError, msgspec.ValidationError) as exc:
            raise ValueError(f"invalid flow: {where}: {exc}") from None
        rules.append(rule)
    if not rules and not any(isinstance(node, SubflowNode) for node in flow.nodes):
        raise ValueError("invalid flow: $.nodes: a flow needs at least one condition node")
    return rules


def _action(node: Node) -> Action | None:
    """The rule action an action node stands for (``None`` for the alert node)."""
    if isinstance(node, WebhookNode):
        return WebhookAction(url=node.url, attempts=node.attempts, backoff_s=node.backoff_s)
    if isinstance(node, CommandNode):
        return CommandAction(
            name=node.name,
            args=node.args,
            device=node.device,
            on=node.on,
            timeout_s=node.timeout_s,
        )
    if isinstance(node, DesiredNode):
        return DesiredStateAction(state=node.state, device=node.device, on=node.on)
    if isinstance(node, EmitNode):
        return EmitAction(metric=node.metric, value=node.value, on=node.on)
    if isinstance(node, PredictNode):
        return PredictAction(
            model=node.model,
            emit=node.emit,
            output=node.output,
            on=node.on,
            timeout_s=node.timeout_s,
        )
    return None


def parse_ref(ref: str) -> tuple[str, int]:
    """``name@version`` as its parts, or ``ValueError``."""
    match = _REF.match(ref)
    if match is None:
        raise ValueError(f"flow reference {ref!r} must be name@version, e.g. pump-checks@3")
    return match[1], int(match[2])


def _subflow(
    flow: Flow,
    node: SubflowNode,
    where: str,
    resolve: Resolver | None,
    chain: tuple[str, ...],
) -> list[StreamRule]:
    try:
        name, version = parse_ref(node.flow)
    except ValueError as exc:
        raise ValueError(f"invalid flow: {where}: {exc}") from None
    if name in chain:
        raise ValueError(f"invalid flow: {where}: sub-flow cycle {' → '.join([*chain, name])}")
    if len(chain) > MAX_SUBFLOW_DEPTH:
        raise ValueError(
            f"invalid flow: {where}: sub-flows nest deeper than {MAX_SUBFLOW_DEPTH}: "
            f"{' → '.join([*chain, name])}"
        )
    if resolve is None:
        return []  # checked as far as it can be without the saved flows
    try:
        included = resolve(name, version)
    except LookupError:
        raise ValueError(f"invalid flow: {where}: there is no saved flow {node.flow}") from None
    try:
        rules = compile_flow(included, resolve, _chain=chain)
    except ValueError as exc:
        detail = str(exc).removeprefix("invalid flow: ")
        raise ValueError(f"invalid flow: {where}: in {node.flow}: {detail}") from None
    prefix = len(rule_id_for(included.id, ""))
    return [
        msgspec.structs.replace(
            rule,
            id=rule_id_for(flow.id, f"{node.id}.{rule.id[prefix:]}"),
            select=node.select if node.select is not None else rule.select,
            enabled=flow.enabled and rule.enabled,
        )
        for rule in rules
    ]


def flow_text(flow: Flow, fmt: Format = "json") -> str:
    """Stable, diff-friendly JSON or YAML: sorted keys, two-space indent, one trailing
    newline."""
    return dump(msgspec.to_builtins(flow), fmt)


class FlowTestResult(msgspec.Struct, frozen=True):
    """One flow test: passed, or what came out instead."""

    name: str
    passed: bool
    expected: list[tuple[str, str, float, str]]
    actual: list[tuple[str, str, float, str]]


def _device(device_id: str, spec: dict[str, Any]) -> Device:
    return Device(
        "test",
        device_id,
        str(spec.get("model", device_id.split("-")[0])),
        site=str(spec.get("site", "")),
        attributes=dict(spec.get("attributes", {})),
    )


def run_flow_tests(
    flow: Flow, t0: int = 1_700_000_000_000, resolve: Resolver | None = None
) -> list[FlowTestResult]:
    """Run the flow's tests through the same runtime the engine uses. Models read their
    fallback here; sub-flows need ``resolve`` (the saved flows)."""
    if resolve is None and flow.tests and any(isinstance(n, SubflowNode) for n in flow.nodes):
        raise ValueError(
            f"flow {flow.id!r} includes sub-flows: run its tests on the server "
            "(POST /api/v1/flows/{id}/tests, or `trellis flows test --url`)"
        )
    compiled = [compile_rule(rule) for rule in compile_flow(flow, resolve)]
    prefix = len(rule_id_for(flow.id, ""))
    results: list[FlowTestResult] = []
    for test in flow.tests:
        devices = {d: _device(d, spec) for d, spec in test.devices.items()}
        signals: list[Signal] = []
        for rule in compiled:
            states: dict[str, SeriesState] = {}
            for device_id, seconds, value in test.readings:
                device = devices.get(device_id) or _device(device_id, {})
                if not rule.matches(device):
                    continue
                state = states.setdefault(device_id, SeriesState())
                ts = t0 + round(seconds * 1000)
                rule.feed(state, "test", device_id, device, ts, value, signals)
            end = t0 + round(max((r[1] for r in test.readings), default=0) * 1000)
            for device_id, state in states.items():
                rule.tick(state, "test", device_id, end, signals)
        actual = sorted(
            (str(s.kind), s.device, (s.ts - t0) / 1000, s.rule.id[prefix:]) for s in signals
        )
        expected = sorted((str(k), d, float(at), n) for k, d, at, n in test.expect)
        results.append(FlowTestResult(test.name, actual == expected, expected, actual))
    return results
