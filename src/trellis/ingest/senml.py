"""SenML (RFC 8428) packs, in JSON and in CBOR, resolved into plain records.

A pack is a list of records; base fields (``bn``, ``bt``, ``bu``, ``bv``) apply to
the record that carries them and to every later one until changed, so resolving a
pack walks it once in order. Only numeric values (``v``) are telemetry here: a
string, boolean or data value is refused with a reason rather than dropped, and so
is a field ending in ``_`` (RFC 8428 §4.4: "must understand").

Pure functions, no I/O; :func:`trellis.ingest.decode.decode_telemetry` calls them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import cbor2
import msgspec

__all__ = ["SENML_VERSION", "SenMLError", "SenMLRecord", "parse_senml_cbor", "parse_senml_json"]

#: The highest ``bver`` this parser understands (RFC 8428 defines 10).
SENML_VERSION = 10
#: RFC 8428 §4.5.1: names start with a letter or digit, then letters, digits, ``-:./_``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
#: RFC 8428 §4.5.3: times below 2**28 are relative to now.
_RELATIVE_LIMIT = 2**28
#: RFC 8428 §6: CBOR labels of the fields.
_CBOR_LABELS: dict[int, str] = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}


class SenMLError(ValueError):
    """The pack is not valid SenML, or uses what Trellis does not take as telemetry."""


class SenMLRecord(msgspec.Struct, frozen=True):
    """One resolved measurement: full name, absolute time in epoch ms, value, unit."""

    name: str
    time_ms: int
    value: float
    unit: str | None = None


class _Record(msgspec.Struct, frozen=True):
    bver: int | None = None
    bn: str | None = None
    bt: float | None = None
    bu: str | None = None
    bv: float | None = None
    bs: float | None = None
    n: str | None = None
    u: str | None = None
    v: float | None = None
    vs: str | None = None
    vb: bool | None = None
    vd: str | None = None
    s: float | None = None
    t: float | None = None
    ut: float | None = None


_json_decoder = msgspec.json.Decoder(list[_Record])
_loose_json = msgspec.json.Decoder(list[dict[str, Any]])


def parse_senml_json(data: bytes, now_ms: int) -> list[SenMLRecord]:
    """Resolve a SenML JSON pack (``application/senml+json``)."""
    try:
        records = _json_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise SenMLError(f"not a SenML pack: {exc}") from None
    except msgspec.DecodeError as exc:
        raise SenMLError(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SenMLError(f"malformed JSON: text is not UTF-8 ({exc.reason})") from None
    if any(key.endswith("_") for record in _loose_json.decode(data) for key in record):
        raise SenMLError("the pack uses a must-understand field (name ending in '_')")
    return _resolve(records, now_ms)


def parse_senml_cbor(data: bytes, now_ms: int) -> list[SenMLRecord]:
    """Resolve a SenML CBOR pack (``application/senml+cbor``)."""
    try:
        loaded = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise SenMLError(f"malformed CBOR: {exc}") from None
    if not isinstance(loaded, list) or not all(isinstance(item, dict) for item in loaded):
        raise SenMLError("not a SenML pack: expected an array of maps")
    renamed: list[dict[str, Any]] = []
    for item in loaded:
        record: dict[str, Any] = {}
        for key, value in item.items():
            name = _CBOR_LABELS.get(key) if isinstance(key, int) else key
            if not isinstance(name, str):
                raise SenMLError(f"unknown SenML CBOR label {key!r}")
            if name.endswith("_"):
                raise SenMLError("the pack uses a must-understand field (name ending in '_')")
            record[name] = value
        renamed.append(record)
    try:
        records = msgspec.convert(renamed, list[_Record])
    except msgspec.ValidationError as exc:
        raise SenMLError(f"not a SenML pack: {exc}") from None
    return _resolve(records, now_ms)


def _resolve(records: list[_Record], now_ms: int) -> list[SenMLRecord]:
    if not records:
        raise SenMLError("the pack is empty")
    base_name = ""
    base_time = 0.0
    base_unit: str | None = None
    base_value = 0.0
    out: list[SenMLRecord] = []
    for index, record in enumerate(records):
        if record.bver is not None and record.bver > SENML_VERSION:
            raise SenMLError(f"record {index}: SenML version {record.bver} is newer than 10")
        if record.bn is not None:
            base_name = record.bn
        if record.bt is not None:
            base_time = record.bt
        if record.bu is not None:
            base_unit = record.bu
        if record.bv is not None:
            base_value = record.bv
        if record.vs is not None or record.vb is not None or record.vd is not None:
            raise SenMLError(f"record {index}: only numeric values ('v') are telemetry")
        if record.v is None:
            if record.s is not None:
                raise SenMLError(f"record {index}: sums ('s') are not taken as telemetry")
            if record.n is None and record.bv is None:
                continue  # a record that only sets base fields
            if record.bv is None:
                raise SenMLError(f"record {index}: no value")
        name = base_name + (record.n or "")
        if not _NAME.fullmatch(name):
            raise SenMLError(
                f"record {index}: name {name!r} (base name {base_name!r}) is not a valid "
                "SenML name (letters, digits and -:./_, starting with a letter or digit)"
            )
        value = base_value + (record.v if record.v is not None else 0.0)
        if not math.isfinite(value):
            raise SenMLError(f"record {index}: value of {name!r} is not finite")
        seconds = base_time + (record.t or 0.0)
        if not math.isfinite(seconds):
            raise SenMLError(f"record {index}: time of {name!r} is not finite")
        time_ms = (
            now_ms + round(seconds * 1000) if seconds < _RELATIVE_LIMIT else round(seconds * 1000)
        )
        out.append(SenMLRecord(name, time_ms, value, record.u or base_unit))
    if not out:
        raise SenMLError("the pack has no measurement")
    return out
