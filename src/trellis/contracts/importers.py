"""Model files into the one device model form: W3C WoT, DTDL v3, and Trellis YAML/JSON.

- **WoT Thing Model / Thing Description** (JSON-LD, W3C WoT TD 1.1): ``properties``
  with ``type``/``unit``/``minimum``/``maximum``, ``actions`` and ``events``; the
  version is ``version.model`` (a TM) or ``version.instance`` (a TD). Trellis terms
  the standard lacks use the ``trellis:`` prefix, declared in ``@context`` the
  JSON-LD way: ``trellis:name``, ``trellis:expectedRateHz``, ``trellis:mappings``,
  ``trellis:contract``. A Brick class in a property's ``@type`` (``brick:Supply_Air_
  Temperature_Sensor``, with ``brick`` declared in the context) types its point in the
  semantic model; one in the Thing's own ``@type`` is the equipment class.
- **DTDL v3 interfaces**: ``Telemetry`` and ``Property`` contents with a numeric
  ``schema`` become metrics (semantic units from the quantitative-types extension),
  ``Command`` contents become actions; the version is the DTMI's ``;N``.
- **Trellis YAML** (or the same as JSON): the :class:`DeviceModel` fields, with
  ``properties`` as the name of ``metrics`` (``brick_class`` on the model and on each).

A Brick class the shipped hierarchy does not know is refused, naming the closest.

Every importer ends in :func:`~trellis.contracts.compiled.compile_model`, so a model
with an unknown unit or a contract that contradicts it is refused on import.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec

from trellis.contracts.compiled import ContractError, compile_model
from trellis.devices.models import (
    ActionSpec,
    ContractRule,
    DeviceModel,
    EventSpec,
    MetricSpec,
    VendorMapping,
)
from trellis.semantic.brick import BRICK_NS, UnknownClassError, brick_classes

__all__ = [
    "ModelFormatError",
    "load_model_file",
    "parse_dtdl",
    "parse_model",
    "parse_wot",
    "parse_yaml",
]

_NUMERIC = {"number", "integer", "double", "float", "long"}
_DTMI = re.compile(r"^dtmi:(?P<path>[A-Za-z][A-Za-z0-9_:]*);(?P<version>[1-9][0-9]*)$")


class ModelFormatError(ValueError):
    """A model file that is not a valid model of its format; the message says where."""


def parse_model(text: str, fmt: str | None = None) -> tuple[DeviceModel, str]:
    """A model from a file's text and the format it was in (``wot``, ``dtdl``, ``yaml``).

    Without ``fmt`` the format is detected: DTDL by its ``dtmi:dtdl`` context, WoT
    by the TD context, anything else is the Trellis form.
    """
    if fmt is None:
        fmt = _detect(text)
    if fmt == "wot":
        model = parse_wot(_json(text))
    elif fmt == "dtdl":
        model = parse_dtdl(_json(text))
    elif fmt == "yaml":
        model = parse_yaml(text)
    else:
        raise ModelFormatError(f"unknown model format {fmt!r}; use wot, dtdl or yaml")
    try:
        compile_model(model)
    except ContractError as exc:
        raise ModelFormatError(str(exc)) from None
    _check_brick(model)
    return model, fmt


def _check_brick(model: DeviceModel) -> None:
    classes = brick_classes()
    try:
        if model.brick_class is not None:
            classes.require(model.brick_class, "brick_class")
        for name, spec in model.metrics.items():
            if spec.brick_class is not None:
                classes.require(spec.brick_class, f"properties.{name}.brick_class")
    except UnknownClassError as exc:
        raise ModelFormatError(str(exc)) from None


def _brick_type(value: Any) -> str | None:
    """The Brick class among JSON-LD ``@type`` values (``brick:X`` or the full IRI)."""
    for item in [value] if isinstance(value, str) else list(value or []):
        text = str(item)
        for prefix in ("brick:", BRICK_NS):
            if text.startswith(prefix):
                return text[len(prefix) :]
    return None


def load_model_file(path: Path) -> tuple[DeviceModel, str]:
    """:func:`parse_model` on a file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: cannot read: {exc}") from None
    try:
        return parse_model(text)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None


def _detect(text: str) -> str:
    if "dtmi:dtdl:context" in text:
        return "dtdl"
    if "www.w3.org/2022/wot/td" in text or "www.w3.org/2019/wot/td" in text:
        return "wot"
    return "yaml"


def _json(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ModelFormatError("the document must be a JSON object")
    return document


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelFormatError(f"{where} must be a number, got {value!r}")
    return float(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def parse_wot(td: dict[str, Any]) -> DeviceModel:
    """A WoT Thing Model or Thing Description (JSON-LD) as a device model."""
    title = td.get("title")
    if not isinstance(title, str) or not title:
        raise ModelFormatError("a Thing Model needs a 'title'")
    version = td.get("version") or {}
    number = version.get("model") or version.get("instance") if isinstance(version, dict) else None
    if not isinstance(number, str):
        raise ModelFormatError("a Thing Model needs 'version': {'model': '<semver>'}")
    metrics: dict[str, MetricSpec] = {}
    for name, prop in (td.get("properties") or {}).items():
        where = f"properties.{name}"
        kind = prop.get("type")
        if kind not in _NUMERIC:
            continue  # strings and objects are state, not telemetry
        unit = prop.get("unit")
        if not isinstance(unit, str):
            raise ModelFormatError(f"{where}: a numeric property needs a 'unit'")
        lo = _number(prop.get("minimum"), f"{where}.minimum")
        hi = _number(prop.get("maximum"), f"{where}.maximum")
        metrics[name] = MetricSpec(
            unit=unit,
            minimum=lo,
            maximum=hi,
            description=str(prop.get("description", prop.get("title", ""))),
            type=str(kind),
            expected_rate_hz=_number(
                prop.get("trellis:expectedRateHz"), f"{where}.trellis:expectedRateHz"
            ),
            brick_class=_brick_type(prop.get("@type")),
        )
    if not metrics:
        raise ModelFormatError("the Thing Model has no numeric properties to measure")
    actions = {
        name: ActionSpec(
            description=str(action.get("description", action.get("title", ""))),
            input=_fields(action.get("input")),
            output=_fields(action.get("output")),
        )
        for name, action in (td.get("actions") or {}).items()
    }
    events = {
        name: EventSpec(
            description=str(event.get("description", event.get("title", ""))),
            data=_fields(event.get("data")),
        )
        for name, event in (td.get("events") or {}).items()
    }
    extra = {
        "mappings": td.get("trellis:mappings", {}),
        "contract": td.get("trellis:contract", {}),
    }
    try:
        rest = msgspec.convert(extra, _Extras)
    except msgspec.ValidationError as exc:
        raise ModelFormatError(f"trellis:mappings / trellis:contract: {exc}") from None
    return DeviceModel(
        name=str(td.get("trellis:name") or _slug(title)),
        version=number,
        description=str(td.get("description", title)),
        metrics=metrics,
        events=events,
        actions=actions,
        mappings=rest.mappings,
        contract=rest.contract,
        source="wot",
        brick_class=_brick_type(td.get("@type")),
    )


class _Extras(msgspec.Struct):
    mappings: dict[str, VendorMapping]
    contract: dict[str, ContractRule]


def _fields(schema: Any) -> dict[str, str]:
    if not isinstance(schema, dict):
        return {}
    if schema.get("type") == "object":
        return {k: str(v.get("type", "any")) for k, v in (schema.get("properties") or {}).items()}
    return {"value": str(schema.get("type", "any"))}


def parse_dtdl(interface: dict[str, Any]) -> DeviceModel:
    """A DTDL v3 Interface as a device model."""
    if interface.get("@type") != "Interface":
        raise ModelFormatError("a DTDL document must be an '@type': 'Interface'")
    dtmi = _DTMI.match(str(interface.get("@id", "")))
    if dtmi is None:
        raise ModelFormatError(
            f"'@id' {interface.get('@id')!r} is not a DTMI like 'dtmi:com:example:Pump;1'"
        )
    metrics: dict[str, MetricSpec] = {}
    actions: dict[str, ActionSpec] = {}
    events: dict[str, EventSpec] = {}
    for content in interface.get("contents") or []:
        types = content.get("@type")
        types = [types] if isinstance(types, str) else list(types or [])
        name = content.get("name")
        if not isinstance(name, str):
            raise ModelFormatError(f"a content of the interface has no 'name': {content!r}")
        description = str(content.get("description", content.get("displayName", "")))
        if "Telemetry" in types or "Property" in types:
            schema = content.get("schema")
            if schema not in _NUMERIC:
                if "Telemetry" in types:
                    events[name] = EventSpec(description, {"value": str(schema)})
                continue
            unit = content.get("unit")
            if not isinstance(unit, str):
                raise ModelFormatError(
                    f"contents.{name}: numeric telemetry needs a semantic type and 'unit'"
                )
            metrics[name] = MetricSpec(unit=unit, description=description, type=str(schema))
        elif "Command" in types:
            request = content.get("request") or {}
            response = content.get("response") or {}
            actions[name] = ActionSpec(
                description,
                {str(request.get("name", "value")): str(request.get("schema"))} if request else {},
                {str(response.get("name", "value")): str(response.get("schema"))}
                if response
                else {},
            )
    if not metrics:
        raise ModelFormatError("the interface has no numeric Telemetry or Property")
    path = dtmi.group("path")
    return DeviceModel(
        name=_slug(str(interface.get("displayName") or path.rsplit(":", 1)[-1])),
        version=dtmi.group("version"),
        description=str(interface.get("description", interface.get("displayName", path))),
        metrics=metrics,
        events=events,
        actions=actions,
        source="dtdl",
    )


def parse_yaml(text: str) -> DeviceModel:
    """The Trellis form, in YAML (or JSON, which is YAML)."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelFormatError(f"not YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ModelFormatError("the model must be a mapping with name, version, properties")
    if "properties" in document:
        document["metrics"] = document.pop("properties")
    document.setdefault("description", "")
    document["source"] = "yaml"
    if isinstance(document.get("version"), int | float):
        document["version"] = str(document["version"])
    try:
        return msgspec.convert(document, DeviceModel, strict=False)
    except msgspec.ValidationError as exc:
        raise ModelFormatError(f"invalid model: {exc}") from None
