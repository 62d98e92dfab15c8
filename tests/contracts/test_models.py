"""Device models: WoT, DTDL v3 and YAML imports, compiled contracts, the model registry."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import NOW_MS, TENANT, telemetry
from trellis.contracts import (
    ContractError,
    UnknownUnitError,
    canonical_unit,
    compile_model,
    conversion,
)
from trellis.contracts.importers import ModelFormatError, load_model_file, parse_model
from trellis.core.errors import ConflictError
from trellis.core.types import Device
from trellis.devices.models import BUILTIN_MODELS, ContractRule, DeviceModel, MetricSpec
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.decode import Limits, Rejection, decode_telemetry

MODELS = Path(__file__).parent.parent / "data" / "models"


def test_wot_thing_model_imports_properties_actions_events_and_mappings() -> None:
    """A WoT TM becomes a model: numeric properties with OM units, actions, events, mappings."""
    model, fmt = load_model_file(MODELS / "chiller.tm.jsonld")
    assert fmt == "wot"
    assert (model.name, model.version, model.source) == ("chiller", "1.0.0", "wot")
    assert set(model.metrics) == {"supply_temp", "return_temp", "power"}  # "mode" is a string
    assert model.metrics["supply_temp"].minimum == -10
    assert model.metrics["supply_temp"].expected_rate_hz == 0.1
    assert canonical_unit(model.metrics["power"].unit) == "kW"
    assert model.actions["setSetpoint"].input == {"value": "number"}
    assert "compressorTrip" in model.events
    assert model.mappings["acme-v2"].fields["supply_temp"].path == "data.sat_f"


def test_dtdl_v3_interface_imports_telemetry_properties_and_commands() -> None:
    """A DTDL v3 interface becomes a model: numeric telemetry and properties, commands."""
    model, fmt = load_model_file(MODELS / "thermostat.dtdl.json")
    assert fmt == "dtdl"
    assert (model.name, model.version) == ("thermostat", "1")
    assert set(model.metrics) == {"temperature", "targetTemperature"}
    assert canonical_unit(model.metrics["temperature"].unit) == "Cel"
    assert model.actions["getMaxMinReport"].input == {"since": "dateTime"}
    assert "status" in model.events


def test_yaml_model_with_a_contract_normalises_units() -> None:
    """The YAML form imports; its contract stores gas pressure in Pa though devices send kPa."""
    model, fmt = load_model_file(MODELS / "boiler.yaml")
    assert fmt == "yaml"
    contract = compile_model(model)
    check = contract.metrics["gas_pressure"]
    assert (check.unit, check.scale, check.maximum) == ("Pa", 1000.0, 10_000.0)
    assert contract.key == "boiler@1.0.0"


def test_builtin_models_compile() -> None:
    """The built-in pump and room models are in the model form and compile."""
    for model in BUILTIN_MODELS.values():
        assert compile_model(model).metrics.keys() == model.metrics.keys()


def test_thing_model_with_unknown_unit_is_refused() -> None:
    """A TM whose unit no vocabulary knows is refused, naming the unit and the metric."""
    with pytest.raises(
        ModelFormatError, match=r"metric 'flow'.*unknown unit 'furlongs-per-fortnight'"
    ):
        load_model_file(MODELS / "bad-unit.tm.jsonld")


def test_contract_with_a_unit_of_another_dimension_is_refused() -> None:
    """A contract asking to store a length in bar contradicts its model and is refused."""
    with pytest.raises(ModelFormatError, match="contract unit contradicts the model"):
        load_model_file(MODELS / "contradicting-contract.yaml")


def test_contract_wider_than_the_model_is_refused() -> None:
    """A contract range beyond the model's physical range is refused."""
    with pytest.raises(ModelFormatError, match="above the model's physical maximum 5 m"):
        load_model_file(MODELS / "contract-too-wide.yaml")


def test_contract_naming_an_unknown_metric_is_refused() -> None:
    """A contract rule for a metric the model lacks is refused."""
    model = DeviceModel(
        "x", "1", "", {"a": MetricSpec("Cel")}, contract={"b": ContractRule(maximum=1.0)}
    )
    with pytest.raises(ContractError, match=r"does not have: \['b'\]"):
        compile_model(model)


def test_mapping_of_an_unknown_metric_is_refused() -> None:
    """A vendor mapping onto a metric the model lacks is refused."""
    text = (
        "name: y\nversion: '1'\nproperties: {a: {unit: Cel}}\n"
        "mappings: {v: {fields: {b: {path: x}}}}"
    )
    with pytest.raises(ModelFormatError, match="maps 'b', which the model does not have"):
        parse_model(text, "yaml")


def test_malformed_model_files_are_refused() -> None:
    """Bad JSON, a DTDL document without a DTMI, a TM without version: clear errors."""
    with pytest.raises(ModelFormatError, match="not JSON"):
        parse_model("{", "wot")
    with pytest.raises(ModelFormatError, match="is not a DTMI"):
        parse_model('{"@type": "Interface", "@id": "thermostat"}', "dtdl")
    with pytest.raises(ModelFormatError, match="needs 'version'"):
        parse_model('{"title": "T", "properties": {}}', "wot")


def test_unknown_unit_error_names_the_unit() -> None:
    """canonical_unit refuses an unknown unit with the unit in the message."""
    with pytest.raises(UnknownUnitError, match="'parsecs'"):
        canonical_unit("parsecs")


@given(st.floats(-1e6, 1e6))
def test_conversion_round_trips(value: float) -> None:
    """Converting °F → °C → °F returns the value (the cached linear form is exact enough)."""
    s1, o1 = conversion("degF", "Cel")
    s2, o2 = conversion("Cel", "degF")
    assert (value * s1 + o1) * s2 + o2 == pytest.approx(value, abs=1e-6)


def test_vendor_mapping_normalises_and_names_no_vendor_field() -> None:
    """A vendor payload maps by field path; °F and W become the model's °C and kW."""
    model, _ = load_model_file(MODELS / "chiller.tm.jsonld")
    device = Device(TENANT, "ch-1", "chiller", attributes={"mapping": "acme-v2"})
    raw = telemetry(
        "ch-1", payload=b'{"data": {"sat_f": 44.6, "pwr_w": 150000, "time": %d}}' % NOW_MS
    )
    readings = decode_telemetry(raw, lambda t, d: device, {"chiller": model}, Limits())
    assert isinstance(readings, list)
    by_metric = {r.metric: (round(r.value, 6), r.unit) for r in readings}
    assert by_metric == {"supply_temp": (7.0, "Cel"), "power": (150.0, "kW")}
    assert all(r.ts == NOW_MS and r.source_msg == raw.id for r in readings)


def test_payload_matching_no_mapping_is_quarantined() -> None:
    """A payload with none of the mapping's fields, or of another shape, is refused."""
    model, _ = load_model_file(MODELS / "chiller.tm.jsonld")
    device = Device(TENANT, "ch-1", "chiller", attributes={"mapping": "acme-v2"})
    models = {"chiller": model}
    empty = decode_telemetry(
        telemetry("ch-1", payload=b'{"other": 1}'), lambda t, d: device, models, Limits()
    )
    assert isinstance(empty, Rejection)
    assert empty.reason.startswith("payload matches no field of mapping 'acme-v2'")
    assert empty.contract == "chiller@1.0.0"
    wrong = decode_telemetry(
        telemetry("ch-1", payload=b'{"data": {"sat_f": "hot"}}'),
        lambda t, d: device,
        models,
        Limits(),
    )
    assert isinstance(wrong, Rejection)
    assert "does not match mapping 'acme-v2'" in wrong.reason
    unknown = decode_telemetry(
        msgspec.structs.replace(
            telemetry("ch-1", {"supply_temp": 5}), properties={"mapping": "nope"}
        ),
        lambda t, d: device,
        models,
        Limits(),
    )
    assert isinstance(unknown, Rejection)
    assert "has no vendor mapping 'nope'" in unknown.reason


def test_registry_stores_versions_and_uses_the_newest(metadata_engine: sa.Engine) -> None:
    """Imported model versions persist; the newest is in use after a restart."""
    registry = DeviceRegistry(metadata_engine)
    v1, fmt = load_model_file(MODELS / "boiler.yaml")
    registry.put_model(v1, fmt)
    v2 = msgspec.structs.replace(v1, version="1.1.0", description="wider")
    registry.put_model(v2, fmt)
    assert registry.put_model(v1, fmt) is not None  # same definition again: a no-op
    with pytest.raises(ConflictError, match="immutable"):
        registry.put_model(msgspec.structs.replace(v1, description="changed"), fmt)
    reopened = DeviceRegistry(metadata_engine)
    assert reopened.models["boiler"].version == "1.1.0"
    assert [m.version for m in reopened.model_versions("boiler")] == ["1.0.0", "1.1.0"]
    reopened.register(Device(TENANT, "b-1", "boiler"))
