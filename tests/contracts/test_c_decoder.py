"""The C decoder of native payloads is the generated Python decoder, reading for reading.

``Contract.native.decode`` runs in C when ``trellis.contracts._native`` is built (CI
requires it: a missing build fails there, as a missing service does); its reference is
``python_decode``, the generated Python function. The property test feeds both the
same random payloads (good, malformed, at the range edges, odd timestamps, lists of
samples) and demands identical results in the same order; the others check what only
C can get wrong: references kept or leaked, and bad arguments.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.contracts.test_native_decoder import CONTRACT, DEVICE, decode_args, payloads
from tests.helpers import NOW_MS, TENANT, telemetry
from tests.services import require
from trellis.contracts import accelerator
from trellis.contracts.compiled import compile_model
from trellis.contracts.importers import parse_model
from trellis.devices.models import BUILTIN_MODELS


@pytest.fixture(autouse=True)
def _built() -> None:
    require(
        "the C decoder of data contracts",
        accelerator.status() == "c",
        f"contracts decode in {accelerator.status()}; `make install` builds it with a C compiler",
    )


def call_of(payload: bytes, seq: int | None = None) -> tuple[Any, ...]:
    """The decode arguments for ``payload`` from the test device."""
    return decode_args(telemetry(DEVICE, payload=payload), seq)


def test_the_contract_decodes_in_c() -> None:
    assert CONTRACT.native.decode is not CONTRACT.native.python_decode
    assert type(CONTRACT.native.decode).__module__ == "trellis.contracts._native"


@settings(max_examples=800, deadline=None)
@given(payload=payloads, seq=st.one_of(st.none(), st.integers(0, 100)))
def test_c_and_python_decoders_agree_exactly(payload: Any, seq: int | None) -> None:
    call = call_of(msgspec.json.encode(payload), seq)
    assert CONTRACT.native.decode(*call) == CONTRACT.native.python_decode(*call)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[]",
        b"[1, 2]",
        b'"text"',
        b"null",
        b'{"values": {}}',
        b'{"values": {"level": 3.0}, "ts": 99999999999999999999999999}',
        b'{"values": {"level": 3.0}, "ts": -99999999999999999999999999}',
        b'{"values": {"level": 3.0}, "ts": 9223372036854775807}',
        b'{"values": {"level": 3.0}, "ts": -9223372036854775808}',
        b'{"values": {"level": 3.0}, "ts": 1e400}',
        b'{"values": {"level": 3.0}, "ts": "not a time"}',
        b'{"values": {"level": 3.0}, "seq": 18446744073709551616}',
        b'{"values": {"level": 1e309}}',
        b'{"values": {"head": 1.7976931348623157e308}}',
        b'[{"values": {"level": 3.0}}, {"values": {}}]',
        b'[{"values": {"level": 3.0}}, {"values": {"level": 99}}]',
    ],
)
def test_malformed_and_extreme_payloads_agree(payload: bytes) -> None:
    """Edges a random strategy rarely draws: 64-bit overflow of the timestamp, huge
    numbers, empty and mixed lists; each decodes (or is refused) the same in C."""
    call = call_of(payload)
    assert CONTRACT.native.decode(*call) == CONTRACT.native.python_decode(*call)


def test_valid_message_keeps_every_reference_it_should_and_no_more() -> None:
    """Thousands of decodes leave the names' reference counts where they were and
    allocate nothing that outlives the readings (a leaked reference per reading would
    keep megabytes alive). Names and metrics are this test's own objects, and only
    allocations made from this file count, so other tests' threads cannot disturb it."""
    model, _ = parse_model(
        "name: probe\nversion: 1.0.0\nproperties:\n"
        "  probe_temp: {unit: degF, minimum: 0, maximum: 200}\n"
        "  probe_level: {unit: m}\n"
        "contract:\n  probe_temp: {unit: Cel}\n"
    )
    contract = compile_model(model)
    tenant, device, message = (f"{kind}-{id(model)}" for kind in ("tenant", "device", "msg"))
    payload = msgspec.json.encode(
        {"ts": NOW_MS, "seq": 7, "values": {"probe_temp": 50.0, "probe_level": 1.5}}
    )
    call = (payload, NOW_MS, tenant, device, None, message, -1000, 1000)
    refused = (b'{"values": {"probe_temp": 999.0}}', *call[1:])
    decode = contract.native.decode
    same = decode(*call) == contract.native.python_decode(*call)
    assert same
    assert decode(*refused) is None
    names = [tenant, device, message, *contract.metrics]
    gc.collect()  # compiling leaves cycles that hold names; collect them first
    before = [sys.getrefcount(name) for name in names]
    tracemalloc.start()
    try:
        first = tracemalloc.take_snapshot()
        for _ in range(20_000):
            decode(*call)
            decode(*refused)
        gc.collect()
        last = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(name) for name in names] == before
    here = [tracemalloc.Filter(True, __file__)]
    grown = sum(
        stat.size_diff
        for stat in last.filter_traces(here).compare_to(first.filter_traces(here), "filename")
    )
    assert grown < 64_000, f"{grown} bytes still allocated after 40,000 decodes"


def test_bad_arguments_raise_instead_of_crashing() -> None:
    decode = CONTRACT.native.decode
    with pytest.raises(TypeError, match="8 positional arguments"):
        decode(b"{}")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        decode(b"{}", "now", TENANT, DEVICE, None, "m", 0, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("oldest", "newest"), [(-(2**70), 2**70), (2**70, -(2**70)), (-(2**63), 2**63 - 1)]
)
def test_limits_beyond_64_bits_agree(oldest: int, newest: int) -> None:
    """A configured age limit too large for C's integers bounds nothing, as in Python."""
    payload = msgspec.json.encode({"ts": NOW_MS - 10**15, "values": {"level": 3.0}})
    call = (*call_of(payload)[:6], oldest, newest)
    assert CONTRACT.native.decode(*call) == CONTRACT.native.python_decode(*call)


def test_a_spec_naming_a_field_the_struct_lacks_is_refused() -> None:
    from trellis.contracts import _native  # the extension itself (built, see the fixture)

    native = CONTRACT.native
    payload_type = type(native.decoder.decode(b'{"values": {}}'))
    values_type = type(native.decoder.decode(b'{"values": {}}').values)
    good = ("f0", "m", "u", 1.0, 0.0, True, None, None)
    common = (native.decoder.decode, payload_type, values_type, (ValueError,), int, object)
    with pytest.raises(TypeError, match="no field"):
        _native.Spec(*common, 0, None, [("nope", "m", "u", 1.0, 0.0, True, None, None)])
    with pytest.raises(TypeError, match="both None or both set"):
        _native.Spec(*common, 0, None, [("f0", "m", "u", 1.0, 0.0, True, 1.0, None)])
    with pytest.raises(TypeError, match="struct type"):
        _native.Spec(
            native.decoder.decode, 3, values_type, (ValueError,), int, object, 0, None, [good]
        )
    spec = _native.Spec(*common, 0, None, [good])
    with pytest.raises(TypeError, match="initialised once"):
        spec.__init__(*common, 0, None, [good])  # type: ignore[misc]


def test_every_builtin_model_compiles_to_c() -> None:
    """The C decoder takes every model shipped, and a minimal one."""
    tiny, _ = parse_model("name: tiny\nversion: 1.0.0\nproperties:\n  x: {unit: m}\n")
    for model in [*BUILTIN_MODELS.values(), tiny]:
        native = compile_model(model).native
        assert type(native.decode).__module__ == "trellis.contracts._native", model.key
        metric = next(iter(model.metrics))
        payload = msgspec.json.encode({"values": {metric: 1}})
        call = (payload, NOW_MS, TENANT, "d", None, "m1", -1, 1)
        assert native.decode(*call) == native.python_decode(*call), model.key
