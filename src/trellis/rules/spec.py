"""Stream rules as data: CEL conditions, windows, temporal operators, selectors, actions.

A :class:`StreamRule` is what an engineer writes in a JSON file or the API::

    {"id": "chiller-drift", "metric": "supply_temp", "severity": "major",
     "select": {"models": ["chiller"], "sites": ["plant-1"]},
     "window": {"kind": "sliding", "size_s": 600},
     "condition": "window.avg > attrs.setpoint + 2.0", "for_s": 600}

Everything a rule can get wrong is refused when it is parsed, with the field named
(``$.window.size_s``) and, for CEL, the line and column inside the expression.
Conditions see: ``value`` (the reading, or the window's value), ``metric``,
``device``, ``ts`` (event time, ms), ``site``, ``model``, ``attrs`` (the device's
attributes), ``tags`` (its tags), ``window`` (the aggregates the expression names,
e.g. ``window.avg``, ``window.p95``) and, when the rule names a ``model``,
``prediction`` (its outputs, e.g. ``prediction.score``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import cel
import msgspec

from trellis.core.types import AlertSeverity
from trellis.semantic.brick import brick_classes

__all__ = [
    "AGGREGATES",
    "CEL_VARIABLES",
    "Action",
    "CommandAction",
    "CompiledExpression",
    "DesiredStateAction",
    "EmitAction",
    "ModelUse",
    "PredictAction",
    "Selector",
    "Sequence",
    "StreamRule",
    "WebhookAction",
    "Window",
    "compile_condition",
]

MAX_WINDOW_S = 7 * 24 * 3600.0
"""A week: longer windows belong in the time-series store, not in rule state."""

AGGREGATES = frozenset({"avg", "min", "max", "sum", "count", "stddev", "rate", "first", "last"})
_PERCENTILE = re.compile(r"^p(\d{1,2})$")
CEL_VARIABLES = frozenset(
    {"value", "metric", "device", "ts", "site", "model", "attrs", "tags", "window", "prediction"}
)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
_WINDOW_FIELD = re.compile(r"\bwindow\.([A-Za-z_][A-Za-z0-9_]*)")
_MACRO_VAR = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)")
_POSITION = re.compile(r"<input>:(\d+):(\d+)")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
Transition = Literal["raise", "clear"]


class Selector(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which devices a rule covers; empty lists mean "any". New devices join by matching.

    ``classes`` (Brick classes, subclasses included) and ``within`` (nodes of the
    semantic model: a site, building, floor, zone or asset) select *points* instead:
    the rule then judges the series bound to them, whatever each device model calls
    its metric, and ``tags`` may also be tags of the points or of what contains them.
    """

    models: list[str] = []
    sites: list[str] = []
    devices: list[str] = []
    tags: list[str] = []
    attributes: dict[str, str | int | float | bool] = {}
    classes: list[str] = []
    within: list[str] = []

    def __post_init__(self) -> None:
        known = brick_classes()
        for name in self.classes:
            known.require(name, "select.classes")

    @property
    def semantic(self) -> bool:
        """Whether it selects points of the semantic model (by class or place)."""
        return bool(self.classes or self.within)


class Window(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which readings an aggregate covers.

    ``tumbling``: fixed buckets of ``size_s``, judged when the bucket closes (at its
    end). ``sliding``: the last ``size_s`` seconds, judged at every reading.
    ``session``: readings less than ``gap_s`` apart, judged when the gap passes.
    """

    kind: Literal["tumbling", "sliding", "session"]
    size_s: float = 0.0
    gap_s: float = 0.0

    def __post_init__(self) -> None:
        span = self.gap_s if self.kind == "session" else self.size_s
        name = "gap_s" if self.kind == "session" else "size_s"
        if not 0 < span <= MAX_WINDOW_S:
            raise ValueError(
                f"window {name} = {span:g} s: a {self.kind} window needs 0 < {name} <= "
                f"{MAX_WINDOW_S:g} (one week)"
            )


class Sequence(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """ "A then B within N s": the rule's condition is A, ``then`` is B."""

    then: str
    within_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_WINDOW_S)]


class WebhookAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="webhook"):
    """POST the transition as JSON; retried with backoff, then dead-lettered."""

    url: str
    attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    backoff_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {self.url!r} must start with http:// or https://")


class CommandAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="command"):
    """Send a device command over MQTT 5 request/response and wait for the answer.

    ``device`` defaults to the device that fired. A timeout, a device error, an
    unknown device or no broker make a dead letter with the reason.
    """

    name: str
    args: dict[str, Any] = {}
    device: str | None = None
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"command name {self.name!r}: letters, digits, '_', '.', '-'")


class DesiredStateAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="desired"):
    """Merge ``state`` into the device twin's desired state; the device gets it on
    its ``config`` topic and reports back on ``state`` (see docs/rules.md)."""

    state: dict[str, Any]
    device: str | None = None
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])

    def __post_init__(self) -> None:
        if not self.state:
            raise ValueError("a desired-state action needs at least one key in state")


class EmitAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="emit"):
    """Emit a derived metric of the device back through ingest (stored, contract-checked,
    seen by other rules). ``value`` defaults to the value that fired the rule."""

    metric: str
    value: float | None = None
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])

    def __post_init__(self) -> None:
        if not _METRIC.match(self.metric):
            raise ValueError(f"emit metric {self.metric!r} is not a metric name")


class PredictAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="predict"):
    """Call model ``model`` on the device's latest features and emit its ``output`` as
    the derived metric ``emit`` (through ingest, like :class:`EmitAction`)."""

    model: str
    emit: str
    output: str = "score"
    on: list[Transition] = msgspec.field(default_factory=lambda: ["raise"])
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0

    def __post_init__(self) -> None:
        if not _METRIC.match(self.emit):
            raise ValueError(f"predict emit {self.emit!r} is not a metric name")


Action = WebhookAction | CommandAction | DesiredStateAction | EmitAction | PredictAction


class ModelUse(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A model whose outputs a condition reads as ``prediction.<output>``.

    The engine predicts from each device's latest value of every feature the model
    reads, at most every ``refresh_s`` per device, batched per model and bounded by
    ``timeout_s``. A missing model, missing features, a failure or a timeout give every
    output ``fallback`` (counted), so a broken model never stalls the rule.
    """

    name: str
    fallback: float = 0.0
    refresh_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0


class StreamRule(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True
):
    """A stateful rule over one metric of the devices its selector picks.

    Temporal operators: ``for_s`` (the condition must hold that long before raising),
    ``clear`` (hysteresis: a raised alert clears only when this expression holds;
    default: when the condition stops holding), ``debounce_s`` (a clear, like a
    raise, must persist that long), ``absence_s`` (raise when a device sends nothing
    for that long, clear at its next reading), ``sequence`` (A then B within N s).
    ``where`` filters readings before they reach the window or the condition;
    ``transform`` (a CEL double) then replaces the value, e.g. ``value * 1.8 + 32.0``.
    ``lateness_s`` holds readings back that long in event time so out-of-order
    readings are judged in order; older ones are counted as late and dropped.
    ``metric`` may be left out when the selector picks points by Brick class or place.
    """

    id: str
    severity: AlertSeverity
    metric: str = ""
    condition: str = ""
    where: str | None = None
    transform: str | None = None
    name: str = ""
    select: Selector = Selector()
    window: Window | None = None
    for_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WINDOW_S)] = 0.0
    clear: str | None = None
    debounce_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_WINDOW_S)] = 0.0
    absence_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_WINDOW_S)] | None = None
    sequence: Sequence | None = None
    lateness_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    max_alerts_per_s: Annotated[float, msgspec.Meta(gt=0)] = 100.0
    actions: list[Action] = []
    enabled: bool = True
    model: ModelUse | None = None

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
        if not self.condition and self.absence_s is None:
            raise ValueError(f"rule {self.id!r} needs a condition, or absence_s for a heartbeat")
        if self.absence_s is not None and (self.condition or self.window or self.sequence):
            raise ValueError(
                f"rule {self.id!r}: absence_s is a rule of its own; drop condition, "
                "window and sequence"
            )
        windowed = self.window is not None
        modelled = self.model is not None
        if self.condition:
            compile_condition(self.condition, "condition", windowed=windowed, modelled=modelled)
        if self.clear is not None:
            compile_condition(self.clear, "clear", windowed=windowed, modelled=modelled)
        if self.where is not None:
            compile_condition(self.where, "where", windowed=False)
        if self.transform is not None:
            compile_condition(self.transform, "transform", windowed=False, number=True)
        if self.sequence is not None:
            compile_condition(
                self.sequence.then, "sequence.then", windowed=windowed, modelled=modelled
            )
        emitted = self.emits
        if self.metric in emitted:
            raise ValueError(
                f"rule {self.id!r} emits {self.metric!r}, the metric it watches: "
                "each emission would feed the rule again"
            )

    @property
    def emits(self) -> set[str]:
        """The derived metrics the rule's actions write back into ingest."""
        found: set[str] = set()
        for action in self.actions:
            if isinstance(action, EmitAction):
                found.add(action.metric)
            elif isinstance(action, PredictAction):
                found.add(action.emit)
        return found

    @property
    def title(self) -> str:
        """What an operator reads: the name, or the condition."""
        if self.name:
            return self.name
        if self.absence_s is not None:
            return f"no {self.metric or ' / '.join(self.select.classes)} for {self.absence_s:g} s"
        return self.condition


class CompiledExpression(msgspec.Struct, frozen=True):
    """A CEL program compiled once, with what it reads."""

    source: str
    program: cel.Program
    variables: frozenset[str]
    aggregates: tuple[str, ...]


def _percentile(name: str) -> float | None:
    match = _PERCENTILE.match(name)
    if match is None or not 0 < int(match.group(1)) < 100:
        return None
    return float(match.group(1))


def compile_condition(
    source: str, field: str, *, windowed: bool, number: bool = False, modelled: bool = False
) -> CompiledExpression:
    """Compile ``source`` and check it, or raise ``ValueError`` naming ``field``.

    Refused: syntax errors (with line and column), unknown variables, unknown window
    aggregates, ``window`` without a window, and type errors a sample evaluation
    finds (CEL does not coerce: ``value + 1`` on a double is an error; write ``1.0``).
    """
    where = f"$.{field}"
    try:
        program = cel.compile(source)
    except ValueError as exc:
        text = str(exc)
        position = _POSITION.search(text)
        at = f" at line {position.group(1)}, column {position.group(2)}" if position else ""
        detail = text.split("ERROR: ", 1)[-1].split("\n", 1)[0]
        raise ValueError(f"{where}: CEL syntax error{at}: {detail}") from None
    bound = set(_MACRO_VAR.findall(source))
    variables = frozenset(program.variables()) - bound
    unknown = sorted(variables - CEL_VARIABLES)
    if unknown:
        raise ValueError(
            f"{where}: unknown variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(CEL_VARIABLES))}"
        )
    aggregates = tuple(sorted(set(_WINDOW_FIELD.findall(source))))
    if "window" in variables and not windowed:
        raise ValueError(f"{where}: the expression reads `window` but the rule has no window")
    if "prediction" in variables and not modelled:
        raise ValueError(f"{where}: the expression reads `prediction` but the rule names no model")
    for name in aggregates:
        if name not in AGGREGATES and _percentile(name) is None:
            raise ValueError(
                f"{where}: unknown aggregate window.{name}; known: "
                f"{', '.join(sorted(AGGREGATES))}, p1..p99"
            )
    sample: dict[str, object] = {
        "value": 0.0,
        "metric": "m",
        "device": "d",
        "ts": 0,
        "site": "",
        "model": "",
        "attrs": {},
        "tags": [],
        "window": dict.fromkeys(aggregates, 0.0),
        "prediction": {},
    }
    try:
        result = program.execute(sample)
    except TypeError as exc:
        raise ValueError(f"{where}: CEL type error: {str(exc).split('. ', 1)[0]}") from None
    except Exception:  # a key missing from the sample attributes is not a type error
        result = 0.0 if number else True
    if number:
        if not isinstance(result, float):
            raise ValueError(
                f"{where}: the expression must give a double (write 1.0, not 1), "
                f"not {type(result).__name__}"
            )
    elif not isinstance(result, bool):
        raise ValueError(
            f"{where}: the expression must be true or false, not {type(result).__name__}"
        )
    return CompiledExpression(source, program, variables, aggregates)
