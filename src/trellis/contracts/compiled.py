"""Data contracts compiled from device models into what the hot path needs, once.

A :class:`Contract` is the model plus its contract rules resolved to plain floats:
per metric the unit readings are stored in, the accepted range in that unit, and the
``scale``/``offset`` that normalises the device's unit to it. Vendor mappings become
msgspec struct types built from their field paths, so a vendor payload is decoded and
type-checked in one pass like the native one, with no per-reading dict walking.

:func:`compile_model` refuses a model whose contract contradicts it (a metric the
model lacks, a unit of another dimension, a range outside the physical one) and any
unit it cannot name; :func:`contract_of` caches one compiled contract per model object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec

from trellis.contracts.units import canonical_unit, conversion
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
    """The native JSON payload of one model as a struct type: ``values`` has one optional
    float field per metric (unknown metrics refused by msgspec, in C, while parsing), so
    a valid message becomes readings without building a dict or walking one."""

    decoder: msgspec.json.Decoder[Any]
    #: (attribute of the values struct, metric, its check, whether the range excludes ±inf)
    fields: tuple[tuple[str, str, MetricCheck, bool], ...]


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
    values = msgspec.defstruct(
        f"{name}_values",
        [(_attr(m), float | None, msgspec.field(default=None, name=m)) for m in checks],
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
    fields = tuple(
        (_attr(m), m, c, math.isfinite(c.minimum) and math.isfinite(c.maximum))
        for m, c in checks.items()
    )
    return CompiledNative(msgspec.json.Decoder(payload | list[payload]), fields)  # type: ignore[valid-type]


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
