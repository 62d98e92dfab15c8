"""Turn a raw telemetry message into readings, or into the reason it cannot be.

Pure functions, no I/O: the pipeline calls :func:`decode_telemetry` on every message
of a batch. A native JSON message goes through its contract's generated decoder
(:class:`~trellis.contracts.compiled.CompiledNative`: types, metrics and ranges checked
by msgspec while parsing); anything that decoder does not take is decoded again by the
general path, which checks sample by sample and names the first fault.

Telemetry travels on ``trellis/v1/{tenant}/{device}/telemetry`` with a JSON body::

    {"ts": 1764042000000, "seq": 42, "values": {"temperature": 71.5, "vibration": 2.1}}

``ts`` is epoch milliseconds or RFC 3339 text with an offset (receive time when
absent), ``seq`` the device's message sequence number. The payload format comes from
the MQTT 5 content type (``properties["content-type"]``):

- ``application/json`` (the default): one object as above, or a batch, a JSON array
  of such objects;
- ``application/senml+json`` and ``application/senml+cbor``: a SenML pack (RFC 8428,
  :mod:`trellis.ingest.senml`); names are metrics, optionally under the base name
  ``"{device}:"``.

A SenML record's unit (``u``, or the pack's ``bu``) is converted to the contract's unit
(scale and offset from pint, cached per unit pair); a unit of another dimension, or
one no vocabulary names, quarantines the message with that reason.

``properties["seq"]`` (an MQTT 5 user property) gives the sequence number for every
format; ``properties["schema-version"]`` must be a version this decoder knows.

A vendor payload is read through one of the device model's vendor mappings, named by
the ``mapping`` user property or the device's ``mapping`` attribute. Every value is
checked against, and normalised to, the model's compiled data contract
(:mod:`trellis.contracts.compiled`); a rejection names the contract version.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec

from trellis.contracts.compiled import CompiledMapping, Contract, contract_of
from trellis.contracts.units import conversion
from trellis.core.clock import parse_timestamp
from trellis.core.types import Device, DeviceStatus, Quality, RawMessage, Reading
from trellis.devices.models import DeviceModel
from trellis.ingest.senml import SenMLError, parse_senml_cbor, parse_senml_json

__all__ = [
    "CONTENT_TYPES",
    "SCHEMA_VERSIONS",
    "Limits",
    "Rejection",
    "TelemetryPayload",
    "decode_telemetry",
    "parse_topic",
    "telemetry_topic",
]

TOPIC_PREFIX = "trellis/v1/"
JSON = "application/json"
SENML_JSON = "application/senml+json"
SENML_CBOR = "application/senml+cbor"
#: The payload formats telemetry may use, by MQTT 5 content type.
CONTENT_TYPES = (JSON, SENML_JSON, SENML_CBOR)
#: Values of the ``schema-version`` user property this decoder understands.
SCHEMA_VERSIONS = frozenset({"1"})


class TelemetryPayload(msgspec.Struct, frozen=True):
    """The JSON body of a telemetry message."""

    values: dict[str, float]
    ts: int | float | str | None = None
    seq: int | None = None


class Rejection(msgspec.Struct, frozen=True):
    """Why a message was not turned into readings; it goes to quarantine whole."""

    reason: str
    tenant: str | None = None
    contract: str | None = None


class Limits(msgspec.Struct, frozen=True):
    """The bounds a message must keep, from :class:`~trellis.core.config.IngestSettings`."""

    max_payload_bytes: int = 256 * 1024
    max_future_skew_ms: int = 300_000
    max_past_age_ms: int = 30 * 86_400_000


_decoder = msgspec.json.Decoder(TelemetryPayload | list[TelemetryPayload])
# Untyped, for error messages only; ``float_hook`` turns 1e400 into inf instead of
# failing again, so the metric holding it can be named.
_loose_decoder = msgspec.json.Decoder(float_hook=float)


def telemetry_topic(tenant: str, device: str) -> str:
    """The topic a device publishes its telemetry on."""
    return f"{TOPIC_PREFIX}{tenant}/{device}/telemetry"


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """``(tenant, device, kind)`` of a Trellis topic, or ``None`` for any other topic."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


# Read once: an enum member looked up through its class costs more than the rest of
# the device checks together.
_ACTIVE = DeviceStatus.ACTIVE

#: topic → (tenant, device) of a telemetry topic, or () for any other topic: parsing is a
#: pure function of the text, so the cache never goes stale; it is emptied when full.
_telemetry_addresses: dict[str, tuple[str, str] | tuple[()]] = {}
_TOPIC_CACHE_SIZE = 65_536


def _telemetry_address(topic: str) -> tuple[str, str] | tuple[()]:
    address = parse_topic(topic)
    found = () if address is None or address[2] != "telemetry" else address[:2]
    if len(_telemetry_addresses) >= _TOPIC_CACHE_SIZE:
        _telemetry_addresses.clear()
    _telemetry_addresses[topic] = found
    return found


def decode_telemetry(
    raw: RawMessage,
    lookup: Callable[[str, str], Device | None],
    models: dict[str, DeviceModel],
    limits: Limits,
) -> list[Reading] | Rejection:
    """The readings in ``raw``, or a :class:`Rejection` saying exactly what is wrong.

    A message is taken or refused whole: one bad value quarantines the message, so a
    replay after a fix re-derives every reading of it with the same lineage.
    """
    address = _telemetry_addresses.get(raw.topic) or _telemetry_address(raw.topic)
    if not address:
        return Rejection(f"topic {raw.topic!r} is not trellis/v1/{{tenant}}/{{device}}/telemetry")
    tenant, device_id = address
    if len(raw.payload) > limits.max_payload_bytes:
        return Rejection(
            f"payload of {len(raw.payload)} bytes exceeds the limit of "
            f"{limits.max_payload_bytes} bytes",
            tenant,
        )
    device = lookup(tenant, device_id)
    if device is None:
        return Rejection(f"unknown device {device_id!r} in tenant {tenant!r}", tenant)
    if device.status is not _ACTIVE:
        return Rejection(f"device {device_id!r} is {device.status.value}", tenant)
    plain = not raw.properties and "mapping" not in device.attributes
    if plain:
        # The common case, native JSON with no user property to honour: straight to
        # the compiled struct; whatever it does not take, the general path judges.
        readings = contract_of(models[device.model]).native.decode(
            raw.payload,
            raw.received_ms,
            tenant,
            device_id,
            None,
            raw.id,
            -limits.max_past_age_ms,
            limits.max_future_skew_ms,
        )
        if readings is not None:
            return readings
    version = raw.properties.get("schema-version", "1")
    if version not in SCHEMA_VERSIONS:
        return Rejection(
            f"schema-version {version!r} is not supported; known: {sorted(SCHEMA_VERSIONS)}",
            tenant,
        )
    seq: int | None = None
    if "seq" in raw.properties:
        text = raw.properties["seq"]
        if not (text.isascii() and text.isdigit()):
            return Rejection(f"user property seq={text!r} is not a non-negative integer", tenant)
        seq = int(text)
    model = models[device.model]
    contract = contract_of(model)
    content_type = raw.properties.get("content-type", JSON).split(";", 1)[0].strip().lower()
    mapping_name = raw.properties.get("mapping") or device.attributes.get("mapping")
    if mapping_name is not None and content_type == JSON:
        mapping = contract.mappings.get(str(mapping_name))
        if mapping is None:
            return Rejection(
                f"device model {model.key} has no vendor mapping {mapping_name!r}; "
                f"known: {sorted(contract.mappings)}",
                tenant,
                contract.key,
            )
        return _mapped(raw, mapping, contract, tenant, device_id, seq, limits)
    if content_type == JSON:
        fast = None if plain else _native(raw, contract, tenant, device_id, seq, limits)
        if fast is not None:
            return fast
        samples = _json_samples(raw, seq)
    elif content_type in (SENML_JSON, SENML_CBOR):
        samples = _senml_samples(raw, device_id, content_type == SENML_CBOR, seq)
    else:
        return Rejection(
            f"content type {content_type!r} is not supported; use one of {list(CONTENT_TYPES)}",
            tenant,
        )
    if isinstance(samples, str):
        return Rejection(samples, tenant, contract.key)
    return _checked(samples, raw, contract, tenant, device_id, limits)


def _checked(
    samples: list[_Sample],
    raw: RawMessage,
    contract: Contract,
    tenant: str,
    device_id: str,
    limits: Limits,
) -> list[Reading] | Rejection:
    """The general path: each sample checked one by one, the first fault named.

    It is also the reference the generated native decoder is tested against
    (tests/contracts/test_native_decoder.py).
    """
    checks = contract.metrics
    readings: list[Reading] = []
    for ts_given, ts, metric, value, sample_seq, unit in samples:
        if ts - raw.received_ms > limits.max_future_skew_ms or (
            raw.received_ms - ts > limits.max_past_age_ms
        ):
            return Rejection(_skew(ts_given, ts, raw.received_ms, limits), tenant, contract.key)
        check = checks.get(metric)
        if check is None:
            return Rejection(
                f"unknown metric {metric!r} for device model {contract.key}; "
                f"known: {sorted(checks)}",
                tenant,
                contract.key,
            )
        if not math.isfinite(value):
            return Rejection(f"value of {metric!r} is not finite: {value!r}", tenant, contract.key)
        if unit is not None and unit != check.unit:
            # The sender named its unit (SenML ``u``): convert from that, not the model's.
            try:
                scale, offset = conversion(unit, check.unit)
            except ValueError as exc:
                return Rejection(
                    f"SenML unit {unit!r} of {metric!r} does not fit the contract unit "
                    f"{check.unit!r}: {exc}",
                    tenant,
                    contract.key,
                )
            value = value * scale + offset
        elif unit is None and not check.identity:
            value = value * check.scale + check.offset
        if not check.minimum <= value <= check.maximum:
            return Rejection(_out_of_range(metric, value, check), tenant, contract.key)
        if not math.isfinite(value):  # a huge value of an unbounded metric, scaled up
            return Rejection(
                f"value of {metric!r} overflows once normalised to {check.unit}",
                tenant,
                contract.key,
            )
        readings.append(
            Reading(
                tenant, device_id, metric, ts, value, check.unit, Quality.GOOD, sample_seq, raw.id
            )
        )
    return readings


def _native(
    raw: RawMessage,
    contract: Contract,
    tenant: str,
    device_id: str,
    seq: int | None,
    limits: Limits,
) -> list[Reading] | None:
    """The readings of a valid native JSON message through the model's generated
    decoder (:class:`~trellis.contracts.compiled.CompiledNative`), or None for anything
    else: the general path then names exactly what is wrong (refusals are rare, so
    computing the reason twice costs nothing that matters)."""
    return contract.native.decode(
        raw.payload,
        raw.received_ms,
        tenant,
        device_id,
        seq,
        raw.id,
        -limits.max_past_age_ms,
        limits.max_future_skew_ms,
    )


def _skew(ts_given: object, ts: int, received_ms: int, limits: Limits) -> str:
    if ts - received_ms > limits.max_future_skew_ms:
        return (
            f"timestamp {ts_given!r} is {(ts - received_ms) / 1000:.0f} s ahead of the "
            "receive time (device clock wrong? limit "
            f"{limits.max_future_skew_ms / 1000:.0f} s)"
        )
    return (
        f"timestamp {ts_given!r} is {(received_ms - ts) / 1000:.0f} s older than the "
        f"receive time (limit {limits.max_past_age_ms / 1000:.0f} s)"
    )


def _out_of_range(metric: str, value: float, check: Any) -> str:
    return (
        f"value {value!r} of {metric!r} is outside the contract range "
        f"[{check.minimum:g}, {check.maximum:g}] {check.unit}"
    )


def _mapped(
    raw: RawMessage,
    mapping: CompiledMapping,
    contract: Contract,
    tenant: str,
    device_id: str,
    seq: int | None,
    limits: Limits,
) -> list[Reading] | Rejection:
    """Readings from a vendor payload through a compiled mapping (one typed decode)."""
    try:
        payload = mapping.decoder.decode(raw.payload)
    except msgspec.ValidationError as exc:
        return Rejection(
            f"payload does not match mapping {mapping.name!r}: {exc}", tenant, contract.key
        )
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejection(f"malformed JSON: {exc}", tenant, contract.key)
    ts = raw.received_ms
    ts_given: int | float | str | None = None
    if mapping.ts is not None:
        ts_given = mapping.ts(payload)
        if ts_given is not None:
            try:
                ts = parse_timestamp(ts_given)
            except ValueError as exc:
                return Rejection(f"invalid payload: {exc}", tenant, contract.key)
            if ts - raw.received_ms > limits.max_future_skew_ms or (
                raw.received_ms - ts > limits.max_past_age_ms
            ):
                return Rejection(_skew(ts_given, ts, raw.received_ms, limits), tenant, contract.key)
    if mapping.seq is not None:
        given = mapping.seq(payload)
        if isinstance(given, int) and given >= 0:
            seq = given
    readings: list[Reading] = []
    checks = contract.metrics
    for metric, get, scale, offset in mapping.fields:
        found = get(payload)
        if found is None:
            continue
        if not math.isfinite(found):
            return Rejection(f"value of {metric!r} is not finite: {found!r}", tenant, contract.key)
        value = found * scale + offset
        check = checks[metric]
        if not check.minimum <= value <= check.maximum:
            return Rejection(_out_of_range(metric, value, check), tenant, contract.key)
        readings.append(
            Reading(tenant, device_id, metric, ts, value, check.unit, Quality.GOOD, seq, raw.id)
        )
    if not readings:
        return Rejection(
            f"payload matches no field of mapping {mapping.name!r} "
            f"(expected one of {[m for m, *_ in mapping.fields]})",
            tenant,
            contract.key,
        )
    return readings


#: (timestamp as given, timestamp in epoch ms, metric, value, sequence number, unit the
#: sender named or None for the model's unit)
_Sample = tuple[object, int, str, float, int | None, str | None]


def _json_samples(raw: RawMessage, seq: int | None) -> list[_Sample] | str:
    try:
        decoded = _decoder.decode(raw.payload)
    except msgspec.ValidationError as exc:
        return f"invalid payload: {_explain(exc, raw.payload)}"
    except msgspec.DecodeError as exc:
        return f"malformed JSON: {exc}"
    except UnicodeDecodeError as exc:
        return f"malformed JSON: a string is not UTF-8 ({exc.reason})"
    payloads = decoded if isinstance(decoded, list) else [decoded]
    if not payloads:
        return "invalid payload: the batch is empty"
    samples: list[_Sample] = []
    for index, payload in enumerate(payloads):
        where = f"[{index}] " if isinstance(decoded, list) else ""
        if payload.ts is None:
            ts = raw.received_ms
        else:
            try:
                ts = parse_timestamp(payload.ts)
            except ValueError as exc:
                return f"invalid payload: {where}{exc}"
        if not payload.values:
            return f"invalid payload: {where}'values' is empty"
        sample_seq = payload.seq if payload.seq is not None else seq
        samples.extend(
            (payload.ts, ts, metric, value, sample_seq, None)
            for metric, value in payload.values.items()
        )
    return samples


def _senml_samples(
    raw: RawMessage, device_id: str, cbor: bool, seq: int | None
) -> list[_Sample] | str:
    try:
        if cbor:
            records = parse_senml_cbor(raw.payload, raw.received_ms)
        else:
            records = parse_senml_json(raw.payload, raw.received_ms)
    except SenMLError as exc:
        return f"invalid SenML pack: {exc}"
    samples: list[_Sample] = []
    for record in records:
        metric = record.name
        for prefix in (f"{device_id}:", f"{device_id}/"):
            if metric.startswith(prefix):
                metric = metric[len(prefix) :]
                break
        else:
            if ":" in metric or "/" in metric:
                return (
                    f"invalid SenML pack: name {record.name!r} is not under this device's "
                    f"base name {device_id + ':'!r}"
                )
        samples.append((record.time_ms, record.time_ms, metric, record.value, seq, record.unit))
    return samples


def _explain(exc: msgspec.ValidationError, payload: bytes) -> str:
    """msgspec's message, with the offending metric named where msgspec says ``[...]``."""
    message = str(exc)
    if "$.values[...]" not in message:
        return message
    try:
        loose: Any = _loose_decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return message
    values = loose.get("values") if isinstance(loose, dict) else None
    if isinstance(values, dict):
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                return message.replace("$.values[...]", f"$.values.{metric}")
            if isinstance(value, float) and not math.isfinite(value):
                return message.replace("$.values[...]", f"$.values.{metric}")
    return message
