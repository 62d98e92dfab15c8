"""The shipped Brick class hierarchy: subclass questions, refusals with a suggestion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.semantic import BrickClasses, UnknownClassError, brick_classes

CLASSES = sorted(brick_classes().parents)


def test_all_temperature_sensors_include_the_supply_air_ones() -> None:
    """ "All Temperature_Sensor" covers supply air and (below it) discharge air sensors."""
    classes = brick_classes()
    wanted = classes.descendants("Temperature_Sensor")
    assert {
        "Supply_Air_Temperature_Sensor",
        "Discharge_Air_Temperature_Sensor",
        "Zone_Air_Temperature_Sensor",
        "Chilled_Water_Supply_Temperature_Sensor",
    } <= wanted
    assert "Temperature_Setpoint" not in wanted
    assert classes.is_a("Supply_Air_Temperature_Sensor", "Point")
    assert not classes.is_a("Temperature_Sensor", "Supply_Air_Temperature_Sensor")


def test_every_class_has_one_of_the_four_kinds() -> None:
    """Points, equipment, locations and collections cover the list; the list is sizeable."""
    classes = brick_classes()
    kinds = {name: classes.kind(name) for name in CLASSES}
    assert len(classes) >= 200
    assert kinds["AHU"] == "equipment"
    assert kinds["HVAC_Zone"] == "location"
    assert kinds["Chilled_Water_Pump"] == "equipment"
    assert kinds["Building_Electrical_Meter"] == "equipment"
    assert kinds["Supply_Air_Temperature_Setpoint"] == "point"


def test_unknown_class_is_refused_with_the_closest_suggested() -> None:
    """A misspelt class names itself and the class that was probably meant."""
    with pytest.raises(UnknownClassError) as caught:
        brick_classes().require("Suply_Air_Temperature_Sensor", "select.classes")
    message = str(caught.value)
    assert "'Suply_Air_Temperature_Sensor'" in message
    assert "did you mean 'Supply_Air_Temperature_Sensor'?" in message
    assert message.startswith("select.classes: ")
    assert brick_classes().closest("zzzz") is None


def test_a_badly_indented_list_is_refused() -> None:
    """An indent jumping two levels cannot say whose subclass a class is."""
    with pytest.raises(ValueError, match="line 2: bad indent"):
        BrickClasses("Point\n      Sensor\n")


def test_a_class_listed_under_two_parents_has_both() -> None:
    """Multiple inheritance: a line repeated under another parent adds that parent."""
    classes = BrickClasses("Point\n  Sensor\n    X\n  Setpoint\n    X\n")
    assert classes.ancestors("X") == {"Sensor", "Setpoint", "Point"}
    assert "X" in classes.descendants("Setpoint")


@settings(deadline=None)
@given(st.sampled_from(CLASSES), st.sampled_from(CLASSES))
def test_descendants_and_ancestors_agree(name: str, other: str) -> None:
    """``name`` is below ``other`` exactly when ``other`` is above ``name``; no class is its
    own ancestor (the hierarchy has no loop)."""
    classes = brick_classes()
    assert (name in classes.descendants(other)) == (
        name == other or other in classes.ancestors(name)
    )
    assert name not in classes.ancestors(name)


@settings(deadline=None)
@given(st.sampled_from(CLASSES), st.sampled_from(["lower", "upper", "prefix"]))
def test_case_and_prefix_slips_find_the_class(name: str, slip: str) -> None:
    """Case changes and a ``brick:`` prefix still lead to the right suggestion."""
    typed = {"lower": name.lower(), "upper": name.upper(), "prefix": f"brick:{name}"}[slip]
    assert brick_classes().closest(typed) == name
