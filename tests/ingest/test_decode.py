"""decode_telemetry: every bad input gets an exact reason, every good one exact readings."""

from __future__ import annotations

import math
from datetime import timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import NOW_MS, TENANT, telemetry
from trellis.core.clock import to_datetime
from trellis.core.types import Device, DeviceStatus, Quality, RawMessage, Reading
from trellis.devices.models import BUILTIN_MODELS
from trellis.ingest.decode import Limits, Rejection, decode_telemetry, parse_topic, telemetry_topic

LIMITS = Limits()
DEVICES = {
    (TENANT, "pump-0001"): Device(TENANT, "pump-0001", "pump"),
    (TENANT, "room-0001"): Device(TENANT, "room-0001", "room"),
    (TENANT, "pump-0666"): Device(TENANT, "pump-0666", "pump", status=DeviceStatus.REVOKED),
    (TENANT, "pump-0777"): Device(TENANT, "pump-0777", "pump", status=DeviceStatus.QUARANTINED),
}
DAY_MS = 86_400_000


def lookup(tenant: str, device: str) -> Device | None:
    """The registry's hot-path lookup, as a plain dictionary."""
    return DEVICES.get((tenant, device))


def decode(raw: RawMessage, limits: Limits = LIMITS) -> list[Reading] | Rejection:
    """decode_telemetry with the test devices and the built-in models."""
    return decode_telemetry(raw, lookup, BUILTIN_MODELS, limits)


def rejected(raw: RawMessage) -> Rejection:
    """The rejection of ``raw``; fails the test when it was accepted."""
    outcome = decode(raw)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def pump(payload: bytes) -> RawMessage:
    """A message from pump-0001 with a raw body."""
    return telemetry("pump-0001", payload=payload)


# --- accepted messages -------------------------------------------------------------


def test_valid_message_becomes_readings() -> None:
    """Each value becomes one reading with unit, seq and the message id as lineage (in
    the model's metric order, which the compiled payload struct follows)."""
    raw = telemetry("pump-0001", {"temperature": 71.5, "vibration": 2}, seq=42)
    readings = decode(raw)
    assert isinstance(readings, list)
    assert sorted(readings, key=lambda r: r.metric) == [
        Reading(TENANT, "pump-0001", "temperature", NOW_MS, 71.5, "Cel", Quality.GOOD, 42, raw.id),
        Reading(TENANT, "pump-0001", "vibration", NOW_MS, 2.0, "mm/s", Quality.GOOD, 42, raw.id),
    ]


def test_missing_ts_takes_receive_time() -> None:
    """Without ``ts`` the readings are stamped with the receive time."""
    raw = telemetry("room-0001", {"co2": 800}, ts=None, received_ms=NOW_MS + 1234)
    readings = decode(raw)
    assert isinstance(readings, list)
    assert [r.ts for r in readings] == [NOW_MS + 1234]


def test_rfc3339_with_offset_is_converted_to_utc_ms() -> None:
    """``2025-11-25T05:40:00.250+02:00`` is 03:40:00.250 UTC, in epoch ms."""
    raw = telemetry("room-0001", {"co2": 800}, ts="2025-11-25T05:40:00.250+02:00")
    readings = decode(raw)
    assert isinstance(readings, list)
    assert readings[0].ts == NOW_MS + 250


def test_rfc3339_with_z_suffix_is_accepted() -> None:
    """A ``Z`` suffix means UTC."""
    readings = decode(telemetry("room-0001", {"co2": 800}, ts="2025-11-25T03:40:00Z"))
    assert isinstance(readings, list)
    assert readings[0].ts == NOW_MS


def test_values_at_the_range_limits_are_accepted() -> None:
    """The physical range is inclusive at both ends."""
    readings = decode(telemetry("pump-0001", {"temperature": -40, "pressure": 100.0}))
    assert isinstance(readings, list)
    assert [r.value for r in readings] == [-40.0, 100.0]


# --- rejected messages: one test per kind of bad input -------------------------------


def test_malformed_json() -> None:
    """Truncated JSON is refused as malformed, and the tenant is kept for the quarantine."""
    rejection = rejected(pump(b'{"values": {"temperature": 7'))
    assert rejection.reason == "malformed JSON: Input data was truncated"
    assert rejection.tenant == TENANT


def test_trailing_garbage_is_malformed() -> None:
    """Bytes after the JSON object make the message malformed."""
    rejection = rejected(pump(b'{"values": {"temperature": 7}} x'))
    assert rejection.reason.startswith("malformed JSON:")
    assert "trailing characters" in rejection.reason


def test_missing_values() -> None:
    """A body without ``values`` names the missing field."""
    rejection = rejected(pump(b'{"ts": 1764042000000}'))
    assert rejection.reason == "invalid payload: Object missing required field `values`"


def test_body_that_is_not_an_object() -> None:
    """A JSON scalar is refused; an array must be a batch of objects, and says where not."""
    assert rejected(pump(b"3")).reason == "invalid payload: Expected `object | array`, got `int`"
    assert rejected(pump(b"[1, 2]")).reason == (
        "invalid payload: Expected `object`, got `int` - at `$[0]`"
    )


def test_string_where_a_number_belongs_names_the_metric() -> None:
    """A quoted number is refused, and the reason names ``$.values.temperature``."""
    rejection = rejected(pump(b'{"values": {"vibration": 1.0, "temperature": "71.5"}}'))
    assert rejection.reason == (
        "invalid payload: Expected `float`, got `str` - at `$.values.temperature`"
    )


def test_bool_where_a_number_belongs_names_the_metric() -> None:
    """``true`` is not a number, and the reason names the metric."""
    rejection = rejected(pump(b'{"values": {"temperature": true}}'))
    assert rejection.reason == (
        "invalid payload: Expected `float`, got `bool` - at `$.values.temperature`"
    )


def test_nan_literal_is_malformed_json() -> None:
    """``NaN`` is not JSON, so the message is malformed rather than a NaN reading."""
    rejection = rejected(pump(b'{"values": {"temperature": NaN}}'))
    assert rejection.reason.startswith("malformed JSON: JSON is malformed: invalid character")


def test_number_out_of_double_range_names_the_metric() -> None:
    """1e400 (infinite as a double) is out of range, and the reason names the metric."""
    rejection = rejected(pump(b'{"values": {"pressure": 1e400}}'))
    assert rejection.reason == "invalid payload: Number out of range - at `$.values.pressure`"


def test_timestamp_ten_years_ahead_is_clock_skew() -> None:
    """A timestamp far ahead of the receive time is refused as a wrong device clock."""
    ahead = NOW_MS + 3653 * DAY_MS
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, ts=ahead))
    assert rejection.reason == (
        f"timestamp {ahead} is 315619200 s ahead of the receive time "
        "(device clock wrong? limit 300 s)"
    )


def test_timestamp_just_inside_the_skew_limit_is_accepted() -> None:
    """A device clock up to max_future_skew ahead is tolerated."""
    ts = NOW_MS + LIMITS.max_future_skew_ms
    readings = decode(telemetry("pump-0001", {"temperature": 20}, ts=ts))
    assert isinstance(readings, list)
    assert readings[0].ts == ts


def test_timestamp_too_old() -> None:
    """A timestamp older than max_past_age is refused with its age and the limit."""
    old = NOW_MS - 31 * DAY_MS
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, ts=old))
    assert rejection.reason == (
        f"timestamp {old} is 2678400 s older than the receive time (limit 2592000 s)"
    )


def test_timestamp_in_seconds_is_refused() -> None:
    """Epoch seconds are refused rather than read as a date in 1970."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, ts=NOW_MS // 1000))
    assert rejection.reason == (
        f"invalid payload: timestamp {NOW_MS // 1000} looks like seconds; send epoch milliseconds"
    )


def test_naive_timestamp_is_refused() -> None:
    """RFC 3339 text without an offset is refused, not guessed to be UTC."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, ts="2025-11-25T03:40:00"))
    assert rejection.reason == (
        "invalid payload: timestamp '2025-11-25T03:40:00' has no UTC offset"
    )


def test_timestamp_text_that_is_not_rfc3339() -> None:
    """A timestamp string that is not a date is refused with the text."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, ts="yesterday"))
    assert rejection.reason == "invalid payload: timestamp 'yesterday' is not RFC 3339"


def test_epoch_ms_sent_as_text_is_refused() -> None:
    """Milliseconds in a string are refused as not RFC 3339, not read as the year 1764."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, ts=str(NOW_MS)))
    assert rejection.reason == f"invalid payload: timestamp '{NOW_MS}' is not RFC 3339"


def test_unknown_device() -> None:
    """A device the registry does not know is refused, naming device and tenant."""
    rejection = rejected(telemetry("pump-9999", {"temperature": 20}))
    assert rejection.reason == "unknown device 'pump-9999' in tenant 'default'"
    assert rejection.tenant == TENANT


def test_unknown_tenant() -> None:
    """A known device id under another tenant is unknown there."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20}, tenant="globex"))
    assert rejection.reason == "unknown device 'pump-0001' in tenant 'globex'"
    assert rejection.tenant == "globex"


@pytest.mark.parametrize(
    ("device", "status"), [("pump-0666", "revoked"), ("pump-0777", "quarantined")]
)
def test_inactive_device(device: str, status: str) -> None:
    """A revoked or quarantined device's telemetry is refused with its status."""
    rejection = rejected(telemetry(device, {"temperature": 20}))
    assert rejection.reason == f"device {device!r} is {status}"


def test_unknown_metric() -> None:
    """A metric the device model lacks is refused, listing the known ones."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20, "rpm": 1450}))
    assert rejection.reason == (
        "unknown metric 'rpm' for device model pump@1.0.0; "
        f"known: {sorted(BUILTIN_MODELS['pump'].metrics)}"
    )


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            {"temperature": 250.5},
            "value 250.5 of 'temperature' is outside the contract range [-40, 250] Cel",
        ),
        (
            {"vibration": -0.1},
            "value -0.1 of 'vibration' is outside the contract range [0, 100] mm/s",
        ),
    ],
)
def test_value_outside_physical_range(values: dict[str, float], reason: str) -> None:
    """A value the sensor cannot physically produce is refused with the range and unit."""
    assert rejected(telemetry("pump-0001", values)).reason == reason


def test_one_bad_value_refuses_the_whole_message() -> None:
    """A message is taken or refused whole: a good value does not get through alone."""
    rejection = rejected(telemetry("pump-0001", {"temperature": 20, "pressure": 101}))
    assert "'pressure'" in rejection.reason


def test_oversized_payload() -> None:
    """A body over max_payload_bytes is refused before it is parsed."""
    limits = Limits(max_payload_bytes=64)
    raw = telemetry("pump-0001", {"temperature": 20}, seq=10**40)
    outcome = decode(raw, limits)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == f"payload of {len(raw.payload)} bytes exceeds the limit of 64 bytes"


@pytest.mark.parametrize(
    "topic",
    [
        "trellis/v1/default/pump-0001/status",
        "trellis/v2/default/pump-0001/telemetry",
        "trellis/v1/default/pump-0001",
        "trellis/v1//pump-0001/telemetry",
        "devices/pump-0001/telemetry",
    ],
)
def test_wrong_topic(topic: str) -> None:
    """A topic that is not trellis/v1/{tenant}/{device}/telemetry is refused, naming it."""
    raw = msgspec.structs.replace(telemetry("pump-0001", {"temperature": 20}), topic=topic)
    rejection = rejected(raw)
    assert rejection.reason == (
        f"topic {topic!r} is not trellis/v1/{{tenant}}/{{device}}/telemetry"
    )


def test_empty_values() -> None:
    """A body with no values at all is refused instead of silently storing nothing."""
    assert rejected(telemetry("pump-0001", {})).reason == "invalid payload: 'values' is empty"


def test_topic_helpers_round_trip() -> None:
    """parse_topic reads back what telemetry_topic writes."""
    assert parse_topic(telemetry_topic("acme", "pump-1")) == ("acme", "pump-1", "telemetry")


# --- properties ----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# Bodies shaped like telemetry whose fields may hold anything.
telemetry_like = st.fixed_dictionaries(
    {},
    optional={
        "values": st.dictionaries(
            st.sampled_from(["temperature", "vibration", "pressure", "co2", "x"]), json_values
        )
        | json_values,
        "ts": st.integers() | st.floats() | st.text(max_size=30) | json_values,
        "seq": st.integers() | json_values,
    },
)

payloads = (
    st.binary(max_size=300)
    | json_values.map(msgspec.json.encode)
    | telemetry_like.map(lambda body: msgspec.json.encode(body))
)


@settings(max_examples=400, deadline=None)
@given(
    payload=payloads,
    device=st.sampled_from(["pump-0001", "room-0001", "pump-0666", "pump-9999"]),
    topic_tail=st.sampled_from(["telemetry", "status"]),
    received_ms=st.integers(0, 2**53),
)
def test_property_decode_never_raises(
    payload: bytes, device: str, topic_tail: str, received_ms: int
) -> None:
    """Any bytes on any topic give readings or a Rejection, never an exception."""
    raw = RawMessage(
        "m", "test", f"trellis/v1/{TENANT}/{device}/{topic_tail}", payload, received_ms
    )
    outcome = decode(raw)
    assert isinstance(outcome, list | Rejection)
    if isinstance(outcome, list):
        assert outcome
        assert all(math.isfinite(r.value) for r in outcome)


def _in_range(metric: str, model: str) -> st.SearchStrategy[float | int]:
    spec = BUILTIN_MODELS[model].metrics[metric]
    return st.floats(spec.minimum, spec.maximum) | st.integers(
        math.ceil(spec.minimum), math.floor(spec.maximum)
    )


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[str, dict[str, Any], int, int | None, Any]:
    """A device, values inside its model's ranges, a timestamp within limits, and how it is sent."""
    device = draw(st.sampled_from(["pump-0001", "room-0001"]))
    model = DEVICES[(TENANT, device)].model
    metrics = draw(
        st.lists(st.sampled_from(sorted(BUILTIN_MODELS[model].metrics)), min_size=1, unique=True)
    )
    values = {metric: draw(_in_range(metric, model)) for metric in metrics}
    ts = draw(st.integers(NOW_MS - LIMITS.max_past_age_ms, NOW_MS + LIMITS.max_future_skew_ms))
    seq = draw(st.none() | st.integers(0, 2**63 - 1))
    offset = draw(st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))))
    sent = draw(
        st.sampled_from(
            [
                ts,
                float(ts),
                to_datetime(ts).astimezone(offset).isoformat(timespec="milliseconds"),
            ]
        )
    )
    return device, values, ts, seq, sent


@settings(max_examples=300, deadline=None)
@given(message=valid_messages())
def test_property_valid_payloads_round_trip(
    message: tuple[str, dict[str, Any], int, int | None, Any],
) -> None:
    """Generated valid payloads decode to exactly the values, time and seq that were sent."""
    device, values, ts, seq, sent = message
    raw = telemetry(device, values, ts=sent, seq=seq)
    model = BUILTIN_MODELS[DEVICES[(TENANT, device)].model]
    readings = decode(raw)
    assert isinstance(readings, list)
    assert sorted(readings, key=lambda r: r.metric) == [
        Reading(
            TENANT, device, metric, ts, value, model.metrics[metric].unit, Quality.GOOD, seq, raw.id
        )
        for metric, value in sorted(values.items())
    ]
