"""Device models declare Brick classes: the YAML field and WoT ``@type``, checked on import."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.contracts.importers import ModelFormatError, load_model_file, parse_model

MODELS = Path(__file__).parent.parent / "data" / "models"

BOILER = """
name: boiler
version: 2.0.0
brick_class: Natural_Gas_Boiler
properties:
  flow_temp: {unit: Cel, minimum: 0, maximum: 95, brick_class: Hot_Water_Supply_Temperature_Sensor}
  return_temp:
    {unit: Cel, minimum: 0, maximum: 95, brick_class: Hot_Water_Return_Temperature_Sensor}
  burner_starts: {unit: count}
"""


def test_yaml_model_carries_brick_classes() -> None:
    """``brick_class`` on the model and on properties; an untyped property stays untyped."""
    model, fmt = parse_model(BOILER)
    assert fmt == "yaml"
    assert model.brick_class == "Natural_Gas_Boiler"
    assert model.metrics["flow_temp"].brick_class == "Hot_Water_Supply_Temperature_Sensor"
    assert model.metrics["burner_starts"].brick_class is None


def test_wot_types_map_to_brick_classes() -> None:
    """A ``brick:`` ``@type`` on a property, or on the Thing, becomes its Brick class;
    other ``@type`` values (``tm:ThingModel``) are not classes."""
    model, _ = load_model_file(MODELS / "rooftop.tm.jsonld")
    assert model.brick_class == "RTU"
    assert model.metrics["discharge_temp"].brick_class == "Discharge_Air_Temperature_Sensor"
    assert model.metrics["outside_temp"].brick_class == "Outside_Air_Temperature_Sensor"
    assert model.metrics["fan_power"].brick_class is None
    untyped, _ = load_model_file(MODELS / "chiller.tm.jsonld")
    assert untyped.brick_class is None


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (BOILER.replace("Natural_Gas_Boiler", "Gas_Boiler"), "brick_class: unknown Brick class"),
        (
            BOILER.replace("Hot_Water_Return_Temperature_Sensor", "HW_Return_Temp"),
            "properties.return_temp.brick_class: unknown Brick class 'HW_Return_Temp'",
        ),
    ],
)
def test_unknown_brick_class_in_a_model_is_refused(text: str, where: str) -> None:
    """The import fails, naming the field and the class."""
    with pytest.raises(ModelFormatError, match=where):
        parse_model(text)
