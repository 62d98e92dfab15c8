"""Data contracts: readings/s validated and normalised by a compiled contract.

Run ``python bench/contracts.py [--quick] [--n N]``. Prints one JSON line per figure on
stdout (DESIGN.md, Benchmarks) and progress on stderr. The payloads are native JSON
telemetry of two device models: the built-in ``pump`` (three of its eight metrics per
message, stored in the device's units) and a ``chiller`` whose contract normalises °F
to °C and kPa to bar, so half the messages pay for unit conversion. Every payload is
valid, and each contender must accept all of them (checked), so every figure counts
the same work. Baseline of the ratios: a bare ``msgspec.json.decode`` of the same
payloads into dicts (no type, no checks), in the same run.

* ``readings_per_s_contract`` (target >= 0.5): the contract stage, payload bytes to
  validated, normalised ``Reading`` objects ready for the store, for a registered
  device whose model is known: ``Contract.native.decode``, the very function
  :func:`decode_telemetry` calls for such a message. It parses into the model's struct
  type (types, unknown metrics, ``null`` and ranges checked by msgspec while parsing),
  checks the timestamp against the receive time, normalises units and builds the
  readings. This is what "validated and normalised by a compiled contract" names.
  Before timing, its readings are checked equal to :func:`decode_telemetry`'s for
  every message. It runs in C when the extension is built (``decoder`` in the
  figure says ``c``, else why it is Python).
* ``readings_per_s_contract_python``: the same stage as the generated Python function
  (``Contract.native.python_decode``, the fallback without a C compiler), same
  messages, same run. Informational.
* ``readings_per_s_decode``: the whole ingest decode, :func:`decode_telemetry`: the
  contract stage plus routing (topic parse, payload size, device lookup and status,
  the model's contract). Informational.
* ``readings_per_s_vs_jsonschema`` (target >= 10): the whole decode, as above, against
  the ``jsonschema`` package validating the same payloads (decoded by msgspec, then
  ``Draft202012Validator`` compiled once, against a schema with the same types, ranges
  in the device unit and no unknown metrics). jsonschema validates only; it neither
  routes nor normalises nor builds readings.
* ``readings_per_s_contract_struct``: the compiled struct decode alone, against the
  bare decode: how much of the contract's cost is parsing. Informational.
* ``readings_per_s_floor``: the struct decode plus three ``Reading(...)`` constructions
  per message with constant arguments, nothing checked or converted: the ceiling of
  any contract stage that hands the store one ``Reading`` object per reading.
  Informational; if its ratio is near or below the target, no check can be cheap
  enough to reach the target while readings stay objects.

Each contender runs several rounds, interleaved, and the best round counts: on a
shared machine that is the figure least disturbed by other work.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import msgspec

from _common import Report
from trellis.contracts.accelerator import status
from trellis.contracts.compiled import contract_of
from trellis.contracts.importers import parse_model
from trellis.core.clock import now_ms
from trellis.core.types import Device, Quality, RawMessage, Reading
from trellis.devices.models import BUILTIN_MODELS, DeviceModel
from trellis.ingest.decode import Limits, decode_telemetry, telemetry_topic

BENCH = "contracts"
REPORT = Report(BENCH)
log = REPORT.log
emit = REPORT.emit_readings


TENANT = "default"
CHILLER = """
name: chiller
version: 1.0.0
properties:
  supply_temp: {unit: degF, minimum: 14, maximum: 122}
  return_temp: {unit: degF, minimum: 14, maximum: 122}
  condenser_pressure: {unit: kPa, minimum: 0, maximum: 3000}
contract:
  supply_temp: {unit: Cel}
  return_temp: {unit: Cel}
  condenser_pressure: {unit: bar}
"""


def build(n_messages: int) -> tuple[list[RawMessage], dict[str, DeviceModel], int]:
    """Alternating pump and chiller messages from 20 devices; all valid. Also the models
    and the number of readings the messages hold."""
    chiller, _ = parse_model(CHILLER)
    models = {"pump": BUILTIN_MODELS["pump"], "chiller": chiller}
    received = now_ms()
    encode = msgspec.json.Encoder().encode
    messages: list[RawMessage] = []
    readings = 0
    for i in range(n_messages):
        ts = received - 3_600_000 + i
        if i % 2 == 0:
            device = f"pump-{i % 20:04d}"
            values = {
                "temperature": 60.0 + (i % 400) / 10,
                "vibration": 2.0 + (i % 37) / 10,
                "pressure": 4.0 + (i % 11) / 100,
            }
        else:
            device = f"chiller-{i % 20:04d}"
            values = {
                "supply_temp": 44.0 + (i % 50) / 10,
                "return_temp": 54.0 + (i % 50) / 10,
                "condenser_pressure": 900.0 + i % 300,
            }
        readings += len(values)
        payload = encode({"ts": ts, "seq": i, "values": values})
        messages.append(
            RawMessage(f"m{i}", "bench", telemetry_topic(TENANT, device), payload, received)
        )
    return messages, models, readings


def json_schema(model: DeviceModel) -> dict[str, Any]:
    """The JSON Schema a contract-less platform would write for ``model``'s payload."""
    values = {
        metric: {
            "type": "number",
            **({"minimum": spec.minimum} if spec.minimum is not None else {}),
            **({"maximum": spec.maximum} if spec.maximum is not None else {}),
        }
        for metric, spec in model.metrics.items()
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "ts": {"type": ["integer", "number", "string"]},
            "seq": {"type": "integer", "minimum": 0},
            "values": {
                "type": "object",
                "properties": values,
                "additionalProperties": False,
                "minProperties": 1,
            },
        },
        "required": ["values"],
        "additionalProperties": False,
    }


def best_of(rounds: int, contenders: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Best seconds of each contender over ``rounds`` interleaved rounds; each contender
    returns how many messages it accepted, which must be all of them."""
    best = dict.fromkeys(contenders, float("inf"))
    for round_ in range(rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            accepted = run()
            elapsed = time.perf_counter() - started
            if accepted < 0:
                raise SystemExit(f"{name} refused a valid message")
            best[name] = min(best[name], elapsed)
        log(f"round {round_ + 1}/{rounds}: " + ", ".join(f"{k} {v:.3f} s" for k, v in best.items()))
    return best


def main() -> None:
    """Parse arguments, run the contenders, print three figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 messages, 3 rounds")
    parser.add_argument("--n", type=int, help="messages (default 100,000)")
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 100_000)
    rounds = 3 if args.quick else 5
    messages, models, readings = build(n)
    log(f"{n:,} messages, {readings:,} readings, {rounds} rounds")
    devices = {
        (TENANT, d): Device(TENANT, d, "pump" if d.startswith("pump") else "chiller")
        for d in {m.topic.split("/")[3] for m in messages}
    }
    limits = Limits()

    def lookup(tenant: str, device: str) -> Device | None:
        return devices.get((tenant, device))

    payloads = [m.payload for m in messages]
    validators = {
        name: jsonschema.Draft202012Validator(json_schema(model)) for name, model in models.items()
    }
    kinds = ["pump" if "/pump-" in m.topic else "chiller" for m in messages]
    contracts = {name: contract_of(model) for name, model in models.items()}
    structs = [contracts[kind].native.decoder.decode for kind in kinds]
    stages = [contracts[kind].native.decode for kind in kinds]
    python_stages = [contracts[kind].native.python_decode for kind in kinds]
    addressed = [(m, *m.topic.split("/")[2:4]) for m in messages]
    oldest, newest = -limits.max_past_age_ms, limits.max_future_skew_ms
    if readings != 3 * n:
        raise SystemExit("the floor contender builds three readings per message")
    for stage, (raw, tenant, device) in zip(stages, addressed, strict=True):
        staged = stage(raw.payload, raw.received_ms, tenant, device, None, raw.id, oldest, newest)
        if (
            staged is None
            or len(staged) != 3
            or staged != decode_telemetry(raw, lookup, models, limits)
        ):
            raise SystemExit(f"the contract stage and decode_telemetry disagree on {raw.id}")

    def bare() -> int:
        decode = msgspec.json.decode
        for payload in payloads:
            decode(payload)
        return len(payloads)

    def contract_with(stages: list[Any]) -> Callable[[], int]:
        def contract() -> int:
            accepted = 0
            for stage, (raw, tenant, device) in zip(stages, addressed, strict=True):
                decoded = stage(
                    raw.payload, raw.received_ms, tenant, device, None, raw.id, oldest, newest
                )
                if decoded is not None:
                    accepted += 1
            return accepted if accepted == len(messages) else -1

        return contract

    def whole() -> int:
        accepted = 0
        for raw in messages:
            if isinstance(decode_telemetry(raw, lookup, models, limits), list):
                accepted += 1
        return accepted if accepted == len(messages) else -1

    def struct_only() -> int:
        for decode, payload in zip(structs, payloads, strict=True):
            decode(payload)
        return len(payloads)

    def floor() -> int:
        good = Quality.GOOD
        for decode, payload in zip(structs, payloads, strict=True):
            decode(payload)
            Reading(TENANT, "d", "m", 0, 0.0, "u", good, None, "i")
            Reading(TENANT, "d", "m", 0, 0.0, "u", good, None, "i")
            Reading(TENANT, "d", "m", 0, 0.0, "u", good, None, "i")
        return len(payloads)

    def schema() -> int:
        decode = msgspec.json.decode
        accepted = 0
        for kind, payload in zip(kinds, payloads, strict=True):
            if validators[kind].is_valid(decode(payload)):
                accepted += 1
        return accepted if accepted == len(payloads) else -1

    fast = best_of(
        rounds,
        {
            "bare": bare,
            "contract": contract_with(stages),
            "python": contract_with(python_stages),
            "decode": whole,
            "struct": struct_only,
            "floor": floor,
        },
    )
    log("jsonschema (one round on a tenth of the messages: it is slow)")
    sample = max(1, n // 10)
    kept, payloads = payloads, payloads[:sample]
    kinds_all, kinds = kinds, kinds[:sample]
    slow = best_of(1, {"jsonschema": schema})
    payloads, kinds = kept, kinds_all
    per_message = readings / n
    rate = {name: n * per_message / seconds for name, seconds in fast.items()}
    schema_rate = sample * per_message / slow["jsonschema"]

    emit(
        "readings_per_s_contract",
        rate["contract"],
        "bare msgspec.json.decode of the same payloads (no type, no checks), same run",
        rate["bare"],
        ">= 0.5 ratio",
        readings,
        decoder=status(),
    )
    emit(
        "readings_per_s_contract_python",
        rate["python"],
        "bare msgspec.json.decode of the same payloads, same run",
        rate["bare"],
        "informational: the contract stage as generated Python (the fallback without C)",
        readings,
    )
    emit(
        "readings_per_s_decode",
        rate["decode"],
        "bare msgspec.json.decode of the same payloads, same run",
        rate["bare"],
        "informational: the contract stage plus topic routing and device lookup",
        readings,
    )
    emit(
        "readings_per_s_vs_jsonschema",
        rate["decode"],
        "jsonschema Draft202012Validator (compiled once) on the same payloads, same run",
        schema_rate,
        ">= 10 ratio",
        readings,
    )
    emit(
        "readings_per_s_contract_struct",
        rate["struct"],
        "bare msgspec.json.decode of the same payloads, same run",
        rate["bare"],
        "informational: the compiled struct decode alone",
        readings,
    )
    emit(
        "readings_per_s_floor",
        rate["floor"],
        "bare msgspec.json.decode of the same payloads, same run",
        rate["bare"],
        "informational: struct decode + Reading construction only, the ceiling of a contract stage",
        readings,
    )


if __name__ == "__main__":
    main()
