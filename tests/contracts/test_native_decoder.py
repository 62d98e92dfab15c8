"""The generated native decoder agrees with the general path, which names every fault.

``Contract.native.decode`` is code written out per contract, with the range checks
pushed into msgspec constraints in the device's unit. It may only ever accept what the
general path (``_json_samples`` then ``_checked``, the reference) accepts, with the very
same readings; anything else it hands back as None for the reference to judge.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import NOW_MS, TENANT, telemetry
from trellis.contracts.compiled import MetricCheck, _device_bounds, compile_model, contract_of
from trellis.contracts.importers import parse_model
from trellis.core.types import Device, DeviceStatus, RawMessage, Reading
from trellis.devices.models import DeviceModel, MetricSpec
from trellis.ingest.decode import Limits, Rejection, _checked, _json_samples, decode_telemetry

PLANT = """
name: plant
version: 2.0.0
properties:
  supply_temp: {unit: degF, minimum: 14, maximum: 122}
  head: {unit: bar}
  level: {unit: m, minimum: 0, maximum: 12.5}
  flow: {unit: m3/h}
  setpoint: {unit: degF, minimum: 50, maximum: 50}
contract:
  setpoint: {unit: Cel}
  supply_temp: {unit: Cel}
  head: {unit: kPa}
"""
MODEL, _ = parse_model(PLANT)
CONTRACT = compile_model(MODEL)
LIMITS = Limits()
DEVICE = "plant-1"


def reference(raw: RawMessage, seq: int | None) -> list[Reading] | Rejection:
    """What the general path makes of ``raw``."""
    samples = _json_samples(raw, seq)
    if isinstance(samples, str):
        return Rejection(samples, TENANT, CONTRACT.key)
    return _checked(samples, raw, CONTRACT, TENANT, DEVICE, LIMITS)


def decode_args(
    raw: RawMessage, seq: int | None
) -> tuple[bytes, int, str, str, int | None, str, int, int]:
    """The native decoder's arguments for ``raw``, as the ingest decoder passes them."""
    return (
        raw.payload,
        raw.received_ms,
        TENANT,
        DEVICE,
        seq,
        raw.id,
        -LIMITS.max_past_age_ms,
        LIMITS.max_future_skew_ms,
    )


def native(raw: RawMessage, seq: int | None) -> list[Reading] | None:
    """What the native decoder makes of ``raw``."""
    return CONTRACT.native.decode(*decode_args(raw, seq))


def same(got: list[Reading], expected: list[Reading]) -> bool:
    """The same readings; their order within a message carries no meaning (the generated
    decoder goes in the model's metric order, the general path in the payload's)."""
    return sorted(got, key=repr) == sorted(expected, key=repr)


def edges(metric: str) -> list[float]:
    """Device-unit values on and around the edges of ``metric``'s contract range."""
    check = CONTRACT.metrics.get(metric)
    if check is None:
        return [1.0]
    found: list[float] = []
    for bound in (check.minimum, check.maximum):
        if math.isfinite(bound):
            exact = (bound - check.offset) / check.scale
            found += [exact, math.nextafter(exact, math.inf), math.nextafter(exact, -math.inf)]
    return found or [1e307, -1e307]


def value_of(metric: str) -> st.SearchStrategy[Any]:
    """Numbers of every kind, edges of the range, and values of the wrong type."""
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(-200, 200),
        st.integers(-1000, 1000),
        st.sampled_from(edges(metric)),
        st.sampled_from(["7", True, None, [1.0], {"v": 1}]),
    )


metric_names = st.sampled_from([*MODEL.metrics, "unknown"])
values = st.dictionaries(metric_names, st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: value_of(k) for k in keys})
)
timestamps = st.one_of(
    st.none(),
    st.integers(NOW_MS - 2 * LIMITS.max_past_age_ms, NOW_MS + 2 * LIMITS.max_future_skew_ms),
    st.sampled_from(
        [
            NOW_MS + 0.5,
            1_700_000,
            "2025-11-25T03:40:00Z",
            "2025-11-25T03:40:00+01:00",
            "2025-11-25 03:40",
            True,
        ]
    ),
)
samples = st.fixed_dictionaries(
    {"values": values},
    optional={"ts": timestamps, "seq": st.one_of(st.none(), st.integers(-3, 10**6), st.just("x"))},
)
payloads = st.one_of(samples, st.lists(samples, max_size=3))


@settings(max_examples=400, deadline=None)
@given(payload=payloads, seq=st.one_of(st.none(), st.integers(0, 100)))
def test_generated_decoder_accepts_only_what_the_general_path_accepts(
    payload: Any, seq: int | None
) -> None:
    """On random payloads (good, bad, at the range edges), whenever the generated
    decoder accepts, the general path accepts with the very same readings."""
    raw = telemetry(DEVICE, payload=msgspec.json.encode(payload))
    fast = native(raw, seq)
    expected = reference(raw, seq)
    if fast is not None:
        assert isinstance(expected, list)
        assert same(fast, expected)


@settings(max_examples=200, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "supply_temp": st.floats(14.001, 121.999),
            "head": st.floats(-1e300, 1e300),
            "level": st.floats(0.0, 12.5),
            "flow": st.floats(allow_nan=False, allow_infinity=False),
        },
    ).filter(bool),
    ts=st.integers(NOW_MS - LIMITS.max_past_age_ms, NOW_MS + LIMITS.max_future_skew_ms),
)
def test_generated_decoder_takes_every_valid_message(values: dict[str, float], ts: int) -> None:
    """A valid message off the range edges never falls to the slow general path."""
    raw = telemetry(DEVICE, values, ts=ts)
    fast = native(raw, None)
    assert fast is not None
    expected = reference(raw, None)
    assert isinstance(expected, list)
    assert same(fast, expected)


@settings(max_examples=300, deadline=None)
@given(
    scale=st.floats(1e-6, 1e6),
    offset=st.floats(-1e6, 1e6),
    low=st.floats(-1e9, 1e9),
    width=st.floats(0, 1e9),
)
def test_device_bounds_normalise_inside_the_contract_range(
    scale: float, offset: float, low: float, width: float
) -> None:
    """The device-unit bounds given to msgspec normalise inside the stored range, and are
    within a few ulps of the exact inverse (the rounding only ever narrows them). Only a
    range narrower than the rounding has none (the decoder then checks in Python)."""
    check = MetricCheck("Cel", low, low + width, scale, offset, False)
    bounds = _device_bounds(check)
    if bounds is None:
        assert width <= 1e-6 * max(1.0, abs(low))
        return
    lo, hi = bounds
    assert check.minimum <= lo * scale + offset
    assert hi * scale + offset <= check.maximum
    exact_lo, exact_hi = (low - offset) / scale, (low + width - offset) / scale
    assert abs(lo - exact_lo) <= 64 * math.ulp(exact_lo) + 1e-300
    assert abs(hi - exact_hi) <= 64 * math.ulp(exact_hi) + 1e-300


def test_value_at_the_exact_range_edge_is_accepted() -> None:
    """122 °F is the contract's 50 °C maximum: if the inward rounding refuses it in the
    struct, the general path still takes it."""
    device = Device(TENANT, DEVICE, "plant")
    readings = decode_telemetry(
        telemetry(DEVICE, {"supply_temp": 122.0}), lambda t, d: device, {"plant": MODEL}, LIMITS
    )
    assert isinstance(readings, list)
    assert [r.metric for r in readings] == ["supply_temp"]
    assert math.isclose(readings[0].value, 50.0)


def test_null_value_is_refused_naming_the_metric() -> None:
    """``null`` is not a number: refused, never silently dropped from the message."""
    device = Device(TENANT, DEVICE, "plant")
    raw = telemetry(DEVICE, payload=b'{"values": {"level": 3.0, "flow": null}}')
    refused = decode_telemetry(raw, lambda t, d: device, {"plant": MODEL}, LIMITS)
    assert isinstance(refused, Rejection)
    assert "$.values.flow" in refused.reason
    assert refused.contract == "plant@2.0.0"


def test_value_overflowing_once_normalised_is_refused() -> None:
    """1e307 bar is a finite number but no finite number of kPa: refused with that reason."""
    device = Device(TENANT, DEVICE, "plant")
    raw = telemetry(DEVICE, {"head": 1e307})
    refused = decode_telemetry(raw, lambda t, d: device, {"plant": MODEL}, LIMITS)
    assert isinstance(refused, Rejection)
    assert refused.reason == "value of 'head' overflows once normalised to kPa"


def test_metric_names_cannot_inject_code_into_the_generated_decoder() -> None:
    """Names are bound as values, never written into the generated source."""
    name = "x') or __import__('os').getcwd() or ('"
    model = DeviceModel("odd", "1", "", {name: MetricSpec("Cel", 0.0, 10.0)})
    contract = contract_of(model)
    assert name not in contract.native.source
    raw = telemetry(DEVICE, {name: 5.0})
    readings = decode_telemetry(raw, lambda t, d: Device(t, d, "odd"), {"odd": model}, LIMITS)
    assert isinstance(readings, list)
    assert [(r.metric, r.value) for r in readings] == [(name, 5.0)]


def test_a_device_or_model_changed_between_messages_is_seen_at_once() -> None:
    """Nothing about a device is cached across messages: a device revoked, or a model
    replaced by a new version, governs the very next message."""
    devices = {DEVICE: Device(TENANT, DEVICE, "plant")}
    models = {"plant": MODEL}
    raw = telemetry(DEVICE, {"level": 12.0})

    def lookup(tenant: str, device: str) -> Device | None:
        return devices.get(device)

    assert isinstance(decode_telemetry(raw, lookup, models, LIMITS), list)
    models["plant"], _ = parse_model(PLANT.replace("maximum: 12.5", "maximum: 10"))
    narrowed = decode_telemetry(raw, lookup, models, LIMITS)
    assert isinstance(narrowed, Rejection)
    assert "outside the contract range [0, 10] m" in narrowed.reason
    devices[DEVICE] = Device(TENANT, DEVICE, "plant", status=DeviceStatus.REVOKED)
    revoked = decode_telemetry(telemetry(DEVICE, {"level": 1.0}), lookup, models, LIMITS)
    assert isinstance(revoked, Rejection)
    assert revoked.reason == f"device {DEVICE!r} is revoked"


def test_a_cached_topic_is_judged_the_same_every_time() -> None:
    """The topic cache keeps refusals too: a command topic is refused on every message."""
    device = Device(TENANT, DEVICE, "plant")
    raw = msgspec.structs.replace(
        telemetry(DEVICE, {"level": 1.0}), topic=f"trellis/v1/{TENANT}/{DEVICE}/command"
    )
    outcomes = [decode_telemetry(raw, lambda t, d: device, {"plant": MODEL}, LIMITS) for _ in "abc"]
    reasons = {o.reason for o in outcomes if isinstance(o, Rejection)}
    assert all(isinstance(o, Rejection) for o in outcomes)
    assert reasons == {f"topic {raw.topic!r} is not trellis/v1/{{tenant}}/{{device}}/telemetry"}
