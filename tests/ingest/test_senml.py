"""SenML (RFC 8428) packs in JSON and CBOR: resolution of base fields, and refusals."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import NOW_MS, telemetry
from trellis.core.types import Device, RawMessage, Reading
from trellis.devices.models import BUILTIN_MODELS
from trellis.ingest.decode import Limits, Rejection, decode_telemetry
from trellis.ingest.senml import SenMLError, parse_senml_cbor, parse_senml_json

_LABELS = {"bn": -2, "bt": -3, "bu": -4, "bv": -5, "n": 0, "u": 1, "v": 2, "vs": 3, "t": 6}


def _cbor(pack: list[dict[str, Any]]) -> bytes:
    return cbor2.dumps([{_LABELS[k]: v for k, v in record.items()} for record in pack])


def _decode(pack: list[dict[str, Any]], *, cbor: bool = False, **props: str) -> Any:
    payload = _cbor(pack) if cbor else msgspec.json.encode(pack)
    kind = "application/senml+cbor" if cbor else "application/senml+json"
    base = telemetry("pump-0001", payload=payload)
    raw = RawMessage(base.id, "test", base.topic, payload, NOW_MS, {"content-type": kind, **props})
    return decode_telemetry(raw, lambda t, d: Device(t, d, "pump"), BUILTIN_MODELS, Limits())


@pytest.mark.parametrize("cbor", [False, True])
def test_base_fields_apply_to_later_records(cbor: bool) -> None:
    """bn, bt and bv resolve as RFC 8428 says, in JSON and in CBOR alike."""
    bt = NOW_MS / 1000
    pack = [
        {"bn": "pump-0001:", "bt": bt, "n": "vibration", "v": 2.5},
        {"n": "temperature", "t": 1, "v": 70.0},
    ]
    readings = _decode(pack, cbor=cbor, seq="7")
    assert [(r.metric, r.ts, r.value, r.seq) for r in readings] == [
        ("vibration", NOW_MS, 2.5, 7),
        ("temperature", NOW_MS + 1000, 70.0, 7),
    ]


def test_relative_times_are_relative_to_the_receive_time() -> None:
    """A time below 2**28 is seconds relative to now (the receive time)."""
    readings = _decode([{"n": "vibration", "v": 1.0, "t": -10}])
    assert readings[0].ts == NOW_MS - 10_000


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        ([{"bn": "pump-0002:", "n": "vibration", "v": 1}], "not under this device's base name"),
        ([{"bn": "bad name!", "n": "x", "v": 1}], "is not a valid SenML name"),
        ([{"n": "vibration", "vs": "high"}], "only numeric values"),
        ([{"n": "vibration"}], "no value"),
        ([], "the pack is empty"),
        ([{"n": "vibration", "v": 1, "bver": 11}], "newer than 10"),
        ([{"n": "vibration", "v": 1, "x_": 1}], "must-understand"),
        ([{"n": "speed", "v": 1}], "unknown metric 'speed'"),
    ],
)
def test_bad_packs_are_refused_with_the_reason(pack: list[dict[str, Any]], reason: str) -> None:
    """Each malformed pack is refused whole, and the reason says what is wrong."""
    result = _decode(pack)
    assert isinstance(result, Rejection)
    assert reason in result.reason


def test_malformed_cbor_and_json_are_refused() -> None:
    """Bytes that are not CBOR / JSON raise SenMLError, never anything else."""
    with pytest.raises(SenMLError, match="malformed CBOR"):
        parse_senml_cbor(b"\xff\xff", NOW_MS)
    with pytest.raises(SenMLError, match="malformed JSON"):
        parse_senml_json(b"[{", NOW_MS)
    with pytest.raises(SenMLError, match="not UTF-8"):
        parse_senml_json(b'[{"n": "\xff", "v": 1}]', NOW_MS)


@given(st.binary(max_size=200))
def test_any_bytes_either_parse_or_raise_senml_error(data: bytes) -> None:
    """The parsers never raise anything but SenMLError, whatever the bytes."""
    for parse in (parse_senml_json, parse_senml_cbor):
        with contextlib.suppress(SenMLError):
            parse(data, NOW_MS)


_record = st.fixed_dictionaries(
    {"n": st.sampled_from(["vibration", "temperature", "pressure"])},
    optional={
        "v": st.floats(0, 100),
        "t": st.floats(-1000, 1000),
        "bn": st.sampled_from(["", "pump-0001:", "pump-0001/"]),
        "bt": st.floats(-1000, 1000),
    },
)


@given(st.lists(_record, min_size=1, max_size=20))
def test_json_and_cbor_packs_decode_the_same(pack: list[dict[str, Any]]) -> None:
    """The same pack in JSON or CBOR yields the same readings, or the same refusal."""
    as_json = _decode(pack)
    as_cbor = _decode(pack, cbor=True)
    if isinstance(as_json, Rejection):
        assert isinstance(as_cbor, Rejection)
        assert as_json.reason == as_cbor.reason
    else:
        strip = [(r.metric, r.ts, r.value) for r in as_json if isinstance(r, Reading)]
        assert strip == [(r.metric, r.ts, r.value) for r in as_cbor]


def test_a_senml_unit_is_converted_to_the_contract_unit() -> None:
    """°F and kPa (``u``, and ``bu`` for later records) become the pump's Cel and bar."""
    pack = [
        {"bn": "pump-0001:", "bt": NOW_MS / 1000, "n": "temperature", "u": "degF", "v": 212.0},
        {"n": "pressure", "u": "kPa", "v": 350.0},
        {"bu": "Cel", "n": "temperature", "t": 1, "v": 70.0},
    ]
    readings = _decode(pack)
    assert [(r.metric, r.unit) for r in readings] == [
        ("temperature", "Cel"),
        ("pressure", "bar"),
        ("temperature", "Cel"),
    ]
    assert [r.value for r in readings] == pytest.approx([100.0, 3.5, 70.0])


@pytest.mark.parametrize(
    ("unit", "reason"),
    [
        ("bar", "SenML unit 'bar' of 'temperature' does not fit the contract unit 'Cel'"),
        ("smoots", "SenML unit 'smoots' of 'temperature' does not fit the contract unit 'Cel'"),
    ],
)
def test_a_senml_unit_of_another_dimension_is_refused(unit: str, reason: str) -> None:
    """A pressure unit on a temperature, or an unknown unit, quarantines with the reason."""
    pack = [{"bn": "pump-0001:", "n": "temperature", "u": unit, "v": 1.0}]
    rejected = _decode(pack)
    assert isinstance(rejected, Rejection)
    assert rejected.reason.startswith(reason)
    assert rejected.contract == "pump@1.0.0"


@given(st.floats(-40.0, 480.0, allow_nan=False))
def test_fahrenheit_readings_land_in_celsius(fahrenheit: float) -> None:
    """Any in-range °F value is stored as (F − 32) × 5/9 °C."""
    pack = [{"bn": "pump-0001:", "n": "temperature", "u": "degF", "v": fahrenheit}]
    (reading,) = _decode(pack)
    assert reading.value == pytest.approx((fahrenheit - 32) * 5 / 9, abs=1e-9)
