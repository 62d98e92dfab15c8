"""Data contracts compiled from device models into what the hot path needs, once.

A :class:`Contract` is the model plus its contract rules resolved to plain floats:
per metric the unit readings are stored in, the accepted range in that unit, and the
``scale``/``offset`` that normalises the device's unit to it. Vendor mappings become
msgspec struct types built from their field paths, so a vendor payload is decoded and
type-checked in one pass like the native one, with no per-reading dict walking. The
native payload gets a struct whose fields carry the ranges as msgspec constraints and
a decoder function generated for the contract (:class:`CompiledNative`).

:func:`compile_model` refuses a model whose contract contradicts it (a metric the
model lacks, a unit of another dimension, a range outside the physical one) and any
unit it cannot name; :func:`contract_of` caches one compiled contract per model object.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from trellis.contracts.accelerator import NativeDecode, native_spec
from trellis.contracts.units import canonical_unit, conversion
from trellis.core.clock import parse_timestamp
from trellis.core.types import Quality, Reading
from trellis.devices.models import DeviceModel, VendorMapping

__all__ = [
    "CompiledMapping",
    "CompiledNative",
    "Contract",
    "ContractError",
    "MetricCheck",
    "compile_model",
    "contract_of",
]


class ContractError(ValueError):
    """A model or its contract is inconsistent; the message names the offending part."""


class MetricCheck(msgspec.Struct, frozen=True, gc=False):
    """One metric, ready for the hot path: ``stored = value * scale + offset``."""

    unit: str
    minimum: float
    maximum: float
    scale: float
    offset: float
    identity: bool


class CompiledMapping(msgspec.Struct, frozen=True):
    """A vendor mapping: a decoder for its payload shape and how to read each field."""

    name: str
    decoder: msgspec.json.Decoder[Any]
    #: (metric, getter, scale, offset): ``raw * scale + offset`` is already in the stored unit
    fields: tuple[tuple[str, Callable[[Any], Any], float, float], ...]
    ts: Callable[[Any], Any] | None
    seq: Callable[[Any], Any] | None


class CompiledNative(msgspec.Struct, frozen=True):
    """The native JSON payload of one model, decoded and checked by generated code.

    The payload becomes a struct type whose ``values`` has one optional float field
    per metric: msgspec refuses unknown metrics, wrong types, ``null`` and values
    outside the metric's range in C, while it parses. The range is the contract's,
    taken back to the device's unit and rounded inwards, so every value the struct
    accepts normalises into the contract range as a finite float.

    ``python_decode`` is a function written out once per contract version: the parse,
    the timestamp, then one straight-line step per metric (normalise, build the
    ``Reading``) with no loop over metrics, no dict and no check left to run. It
    returns None for anything it does not take (including a value at the very edge
    of the range, refused by the rounding): the general path then judges the message
    and names the reason of every refusal.

    ``decode`` is the same function in C (``trellis.contracts._native``, built at
    install when a C compiler is there), given the same struct types and constants,
    or ``python_decode`` itself when the extension is not built. Tests hold the two
    equal, reading for reading.
    """

    decode: NativeDecode
    #: The generated Python function: the reference of ``decode`` and its fallback.
    python_decode: NativeDecode
    #: The payload struct's decoder that ``decode`` parses with.
    decoder: msgspec.json.Decoder[Any]
    #: The generated source of ``python_decode``, for debugging and for the docs.
    source: str


class Contract(msgspec.Struct, frozen=True):
    """The compiled data contract of one device model version."""

    model: str
    version: str
    metrics: dict[str, MetricCheck]
    mappings: dict[str, CompiledMapping]
    native: CompiledNative

    @property
    def key(self) -> str:
        """``model@version``, as quarantine entries and lineage record it."""
        return f"{self.model}@{self.version}"


def compile_model(model: DeviceModel) -> Contract:
    """The contract of ``model``, or :class:`ContractError` saying what contradicts what."""
    checks: dict[str, MetricCheck] = {}
    for metric, spec in model.metrics.items():
        where = f"model {model.key}, metric {metric!r}"
        try:
            unit = canonical_unit(spec.unit)
        except ValueError as exc:
            raise ContractError(f"{where}: {exc}") from None
        lo = -math.inf if spec.minimum is None else spec.minimum
        hi = math.inf if spec.maximum is None else spec.maximum
        if lo > hi:
            raise ContractError(f"{where}: minimum {lo} exceeds maximum {hi}")
        rule = model.contract.get(metric)
        target = unit
        scale, offset = 1.0, 0.0
        if rule is not None:
            if rule.unit is not None:
                try:
                    target = canonical_unit(rule.unit)
                    scale, offset = conversion(unit, target)
                except ValueError as exc:
                    raise ContractError(
                        f"{where}: contract unit contradicts the model: {exc}"
                    ) from None
            lo, hi = _convert(lo, scale, offset), _convert(hi, scale, offset)
            if rule.minimum is not None:
                if rule.minimum < lo:
                    raise ContractError(
                        f"{where}: contract minimum {rule.minimum} {target} is below the "
                        f"model's physical minimum {lo:g} {target}"
                    )
                lo = rule.minimum
            if rule.maximum is not None:
                if rule.maximum > hi:
                    raise ContractError(
                        f"{where}: contract maximum {rule.maximum} {target} is above the "
                        f"model's physical maximum {hi:g} {target}"
                    )
                hi = rule.maximum
            if lo > hi:
                raise ContractError(f"{where}: contract range [{lo}, {hi}] is empty")
        checks[metric] = MetricCheck(target, lo, hi, scale, offset, scale == 1.0 and offset == 0.0)
    unknown = sorted(set(model.contract) - set(model.metrics))
    if unknown:
        raise ContractError(
            f"model {model.key}: the contract names metrics the model does not have: {unknown}"
        )
    mappings = {
        name: _compile_mapping(model, name, mapping, checks)
        for name, mapping in model.mappings.items()
    }
    return Contract(model.name, model.version, checks, mappings, _compile_native(model, checks))


def _compile_native(model: DeviceModel, checks: dict[str, MetricCheck]) -> CompiledNative:
    name = model.name.replace("-", "_")
    bounds = {metric: _device_bounds(check) for metric, check in checks.items()}
    values = msgspec.defstruct(
        f"{name}_values",
        [
            (f"f{i}", _bounded(bounds[m]) | UnsetType, msgspec.field(default=UNSET, name=m))
            for i, m in enumerate(checks)
        ],
        frozen=True,
        gc=False,
        forbid_unknown_fields=True,
    )
    payload = msgspec.defstruct(
        f"{name}_payload",
        [
            ("values", values),
            ("ts", int | float | str | None, None),
            ("seq", int | None, None),
        ],
        frozen=True,
        gc=False,
    )
    decoder = msgspec.json.Decoder(payload | list[payload])  # type: ignore[valid-type]
    namespace: dict[str, Any] = {
        "parse": decoder.decode,
        "Payload": payload,
        "Invalid": (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError),
        "parse_timestamp": parse_timestamp,
        "Reading": Reading,
        "UNSET": UNSET,
        "GOOD": Quality.GOOD,
    }
    # Names, units and factors are bound as globals of the generated function, never
    # spliced into its text, so a model file cannot inject code.
    steps: list[str] = []
    # The same, as the C decoder takes it: (field, metric, unit, scale, offset,
    # identity, minimum, maximum) with the range None where msgspec enforces it.
    metrics: list[tuple[str, str, str, float, float, bool, float | None, float | None]] = []
    for i, (metric, check) in enumerate(checks.items()):
        namespace[f"metric{i}"], namespace[f"unit{i}"] = metric, check.unit
        steps += [f"        v{i} = values.f{i}", f"        if v{i} is not UNSET:"]
        if not check.identity:
            namespace[f"scale{i}"], namespace[f"offset{i}"] = check.scale, check.offset
            steps.append(f"            v{i} = v{i} * scale{i} + offset{i}")
        minimum = maximum = None
        if bounds[metric] is None:
            # No device-unit bounds for msgspec: the range is checked here, on the stored
            # value (clamped to finite bounds, so an overflow to inf fails too).
            minimum = namespace[f"minimum{i}"] = max(check.minimum, -_FINITE)
            maximum = namespace[f"maximum{i}"] = min(check.maximum, _FINITE)
            steps += [
                f"            if not minimum{i} <= v{i} <= maximum{i}:",
                "                return None",
            ]
        steps.append(
            f"            out.append(Reading(tenant, device, metric{i}, ts, v{i}, unit{i}, "
            "GOOD, seq, message_id))"
        )
        field = (f"f{i}", metric, check.unit, check.scale, check.offset, check.identity)
        metrics.append((*field, minimum, maximum))
    sample = _SAMPLE_TEMPLATE + "\n".join(steps)
    source = _NATIVE_TEMPLATE.replace("SAMPLE", sample)
    exec(compile(source, f"<trellis contract {model.key}>", "exec"), namespace)  # noqa: S102
    python_decode: NativeDecode = namespace["decode"]
    fast = native_spec(
        parse=decoder.decode,
        payload_type=payload,
        values_type=values,
        invalid=namespace["Invalid"],
        parse_timestamp=parse_timestamp,
        reading_type=Reading,
        good=Quality.GOOD,
        unset=UNSET,
        metrics=metrics,
    )
    return CompiledNative(fast or python_decode, python_decode, decoder, source)


# One message usually holds one sample: it gets its own branch, without the loop. The
# sample's steps are written into both branches (SAMPLE below).
_NATIVE_TEMPLATE = """\
def decode(payload, received, tenant, device, given_seq, message_id, oldest, newest):
    try:
        decoded = parse(payload)
    except Invalid:
        return None
    out = []
    if type(decoded) is Payload:
        sample = decoded
SAMPLE
        return out or None
    for sample in decoded:
        before = len(out)
SAMPLE
        if len(out) == before:
            return None
    return out or None
"""
_SAMPLE_TEMPLATE = """\
        ts = sample.ts
        if ts is None:
            ts = received
        elif type(ts) is not int or ts < 1_000_000_000_000:
            try:
                ts = parse_timestamp(ts)
            except ValueError:
                return None
        if not oldest <= ts - received <= newest:
            return None
        seq = sample.seq
        if seq is None:
            seq = given_seq
        values = sample.values
"""


#: The largest finite float: an unbounded metric is still kept finite once normalised.
_FINITE = sys.float_info.max


def _bounded(bounds: tuple[float, float] | None) -> Any:
    """``float`` constrained to the device-unit ``bounds``; plain ``float`` without them
    (the generated decoder then checks the stored value itself)."""
    if bounds is None:
        return float
    return Annotated[float, msgspec.Meta(ge=bounds[0], le=bounds[1])]


def _device_bounds(check: MetricCheck) -> tuple[float, float] | None:
    """The device-unit range ``[lo, hi]`` such that every ``v`` in it has
    ``check.minimum <= v * scale + offset <= check.maximum``, both finite.

    ``v * scale + offset`` is monotone in ``v`` under IEEE rounding when ``scale > 0``,
    so it is enough that the two bounds themselves normalise inside: each is the
    exact inverse, nudged inwards one ulp at a time until it does.
    """
    if check.identity:
        return max(check.minimum, -_FINITE), min(check.maximum, _FINITE)
    if not check.scale > 0:
        return None
    target_lo, target_hi = max(check.minimum, -_FINITE), min(check.maximum, _FINITE)

    def stored(v: float) -> float:
        return v * check.scale + check.offset

    lo = max((target_lo - check.offset) / check.scale, -_FINITE)
    hi = min((target_hi - check.offset) / check.scale, _FINITE)
    for _ in range(64):
        if math.isfinite(stored(lo)) and stored(lo) >= target_lo:
            break
        lo = math.nextafter(lo, math.inf)
    else:
        return None
    for _ in range(64):
        if math.isfinite(stored(hi)) and stored(hi) <= target_hi:
            break
        hi = math.nextafter(hi, -math.inf)
    else:
        return None
    return (lo, hi) if lo <= hi else None


def _convert(value: float, scale: float, offset: float) -> float:
    return value if math.isinf(value) else value * scale + offset


def _compile_mapping(
    model: DeviceModel, name: str, mapping: VendorMapping, checks: dict[str, MetricCheck]
) -> CompiledMapping:
    where = f"model {model.key}, mapping {name!r}"
    if not mapping.fields:
        raise ContractError(f"{where}: maps no fields")
    tree: dict[str, Any] = {}
    leaves: list[tuple[list[str], Any]] = []
    fields: list[tuple[str, Callable[[Any], Any], float, float]] = []
    for metric, field in mapping.fields.items():
        if metric not in checks:
            raise ContractError(f"{where}: maps {metric!r}, which the model does not have")
        source = field.unit if field.unit is not None else model.metrics[metric].unit
        try:
            # vendor number → stored unit in one linear step: (raw * scale + offset) → target
            s, o = conversion(source, checks[metric].unit)
        except ValueError as exc:
            raise ContractError(f"{where}, field {metric!r}: {exc}") from None
        scale, offset = field.scale * s, field.offset * s + o
        fields.append((metric, _getter(field.path), scale, offset))
        leaves.append((field.path.split("."), float | None))
    leaves.extend(
        (path.split("."), int | float | str | None)
        for path in (mapping.ts, mapping.seq)
        if path is not None
    )
    for parts, kind in leaves:
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ContractError(f"{where}: path {'.'.join(parts)!r} crosses a value")
            node = child
        if parts[-1] in node:
            raise ContractError(f"{where}: path {'.'.join(parts)!r} is mapped twice")
        node[parts[-1]] = kind
    struct = _struct(f"{model.name}_{name}", tree)
    return CompiledMapping(
        name,
        msgspec.json.Decoder(struct),
        tuple(fields),
        _getter(mapping.ts) if mapping.ts else None,
        _getter(mapping.seq) if mapping.seq else None,
    )


def _struct(name: str, tree: dict[str, Any]) -> type[msgspec.Struct]:
    """A struct type for ``tree``; nested objects become nested optional structs."""
    fields: list[tuple[str, Any, Any]] = []
    for key, value in tree.items():
        kind = _struct(f"{name}_{key}", value) | None if isinstance(value, dict) else value
        fields.append((_attr(key), kind, msgspec.field(default=None, name=key)))
    return msgspec.defstruct(name.replace("-", "_"), fields, frozen=True, gc=False)


def _attr(key: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in key)
    return f"f_{safe}"


def _getter(path: str) -> Callable[[Any], Any]:
    attrs = [_attr(part) for part in path.split(".")]

    def get(obj: Any) -> Any:
        for attr in attrs:
            if obj is None:
                return None
            obj = getattr(obj, attr)
        return obj

    return get


_cache: dict[int, tuple[DeviceModel, Contract]] = {}


def contract_of(model: DeviceModel) -> Contract:
    """The compiled contract of ``model``, compiled on first use and kept while it lives.

    Keyed by identity (models hold dicts, so they are not hashable); the cached model
    reference keeps the id from being reused by another object.
    """
    entry = _cache.get(id(model))
    if entry is not None and entry[0] is model:
        return entry[1]
    contract = compile_model(model)
    _cache[id(model)] = (model, contract)
    return contract
