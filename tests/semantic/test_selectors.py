"""Rule selectors by Brick class, place and tag: resolved by the engine, refreshed on change."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import NOW_MS, TENANT
from trellis.alerts import AlertService
from trellis.bus import InProcessBus
from trellis.core.types import AlertSeverity, Reading
from trellis.devices import DeviceRegistry
from trellis.rules import RuleEngine, RuleStore, Selector, StreamRule, ThresholdRule, parse_rule
from trellis.rules.runtime import Signal
from trellis.semantic import Node, SemanticModel, parse_turtle

B2 = (Path(__file__).parent.parent / "data" / "brick" / "building-b2.ttl").read_text()

ZONE_TOO_WARM = ThresholdRule(
    id="zone-too-warm",
    op=">",
    threshold=26.0,
    severity=AlertSeverity.MINOR,
    select=Selector(classes=["Zone_Air_Temperature_Sensor"], within=["B2-F1"]),
)


@pytest.fixture
def semantic(metadata_engine: sa.Engine) -> SemanticModel:
    """Building B2 for tenant ``default``."""
    model = SemanticModel(metadata_engine)
    model.put(TENANT, *parse_turtle(B2), replace=True)
    return model


def _engine(metadata_engine: sa.Engine, semantic: SemanticModel, *rules: object) -> RuleEngine:
    store = RuleStore(metadata_engine)
    for rule in rules:
        store.put(TENANT, parse_rule(rule) if isinstance(rule, dict) else rule)  # type: ignore[arg-type]
    bus: InProcessBus[Reading] = InProcessBus(4)
    engine = RuleEngine(
        bus.subscribe("rules"),
        store,
        AlertService(metadata_engine),
        DeviceRegistry(metadata_engine),
        semantic=semantic,
    )
    engine.reload()
    return engine


def _fired(signals: list[Signal]) -> set[tuple[str, str, str]]:
    return {(s.rule.id, s.device, s.metric) for s in signals if s.kind == "raise"}


def test_a_class_and_place_selector_picks_the_points_not_the_devices(
    metadata_engine: sa.Engine, semantic: SemanticModel
) -> None:
    """Zone temperatures of floor 1 trip; floor 2's zone and other metrics of the same
    devices do not, whatever they read."""
    engine = _engine(metadata_engine, semantic, ZONE_TOO_WARM)
    batch = [
        Reading(TENANT, "vav-101", "zone_temp", NOW_MS, 27.0),
        Reading(TENANT, "vav-102", "zone_temp", NOW_MS, 22.0),
        Reading(TENANT, "vav-201", "zone_temp", NOW_MS, 30.0),  # floor 2
        Reading(TENANT, "vav-101", "discharge_temp", NOW_MS, 35.0),  # not a zone sensor
        Reading("other", "vav-101", "zone_temp", NOW_MS, 35.0),  # another tenant
    ]
    assert _fired(engine.judge(batch)) == {("zone-too-warm", "vav-101", "zone_temp")}


def test_several_points_of_one_device_are_judged_apart(
    metadata_engine: sa.Engine, semantic: SemanticModel
) -> None:
    """AHU-1 has supply, return and outside air sensors reporting at the same instant;
    each is its own series, so all three are judged and the alert names the metric."""
    rule = {
        "id": "air-hot",
        "severity": "major",
        "condition": "value > 30.0",
        "select": {"classes": ["Air_Temperature_Sensor"]},
    }
    engine = _engine(metadata_engine, semantic, rule)
    batch = [Reading(TENANT, "ahu-1", m, NOW_MS, 31.0) for m in ("sat", "rat", "oat", "sat_sp")]
    assert _fired(engine.judge(batch)) == {
        ("air-hot", "ahu-1", "sat"),
        ("air-hot", "ahu-1", "rat"),
        ("air-hot", "ahu-1", "oat"),
    }
    [signal] = list(engine.judge([Reading(TENANT, "ahu-1", "sat", NOW_MS + 1, 20.0)]))
    assert (signal.kind, signal.metric, signal.message) == (
        "clear",
        "sat",
        "value > 30.0 (sat = 20)",
    )


def test_tags_select_points_by_what_contains_them(
    metadata_engine: sa.Engine, semantic: SemanticModel
) -> None:
    """Zone 201 is tagged critical; a tag selector picks its point, not floor 1's."""
    rule = {
        "id": "critical-zones",
        "severity": "critical",
        "op": ">",
        "threshold": 24.0,
        "select": {"within": ["B2"], "tags": ["critical"], "classes": ["Temperature_Sensor"]},
    }
    engine = _engine(metadata_engine, semantic, rule)
    batch = [
        Reading(TENANT, "vav-201", "zone_temp", NOW_MS, 25.0),
        Reading(TENANT, "vav-101", "zone_temp", NOW_MS, 25.0),
    ]
    assert _fired(engine.judge(batch)) == {("critical-zones", "vav-201", "zone_temp")}


def test_a_new_point_joins_a_loaded_rule(
    metadata_engine: sa.Engine, semantic: SemanticModel
) -> None:
    """A point added after the rule was loaded is judged from the next batch on: the
    semantic model tells the engine, which re-resolves before judging."""
    engine = _engine(metadata_engine, semantic, ZONE_TOO_WARM)
    semantic.listeners.append(engine.invalidate)
    reading = Reading(TENANT, "vav-103", "zone_temp", NOW_MS, 28.0)
    assert _fired(engine.judge([reading])) == set()
    semantic.put(
        TENANT,
        [
            Node("VAV-103", "VAV", parent="zone-101"),
            Node(
                "VAV-103-ZAT",
                "Zone_Air_Temperature_Sensor",
                parent="VAV-103",
                device="vav-103",
                metric="zone_temp",
            ),
        ],
    )
    later = Reading(TENANT, "vav-103", "zone_temp", NOW_MS + 1000, 28.0)
    assert _fired(engine.judge([later])) == {("zone-too-warm", "vav-103", "zone_temp")}


@pytest.mark.parametrize(
    "rule",
    [
        {
            "id": "r",
            "severity": "major",
            "op": ">",
            "threshold": 1.0,
            "select": {"classes": ["Zone_Air_Temprature_Sensor"]},
        },
        {
            "id": "r",
            "severity": "major",
            "condition": "value > 1.0",
            "select": {"classes": ["Zone_Air_Temprature_Sensor"]},
        },
    ],
)
def test_unknown_class_in_a_selector_is_refused_on_parse(rule: dict[str, object]) -> None:
    """Threshold and stream rules alike: the class is named and the intended one suggested."""
    with pytest.raises(
        ValueError,
        match="unknown Brick class 'Zone_Air_Temprature_Sensor'; "
        "did you mean 'Zone_Air_Temperature_Sensor'",
    ):
        parse_rule(rule)


def test_a_rule_without_metric_needs_a_point_selector() -> None:
    """Leaving out the metric only makes sense when points are selected."""
    with pytest.raises(ValueError, match=r"needs a metric, or select\.classes"):
        parse_rule({"id": "r", "severity": "major", "op": ">", "threshold": 1.0})
    with pytest.raises(ValueError, match=r"needs a metric, or select\.classes"):
        StreamRule(id="r", severity=AlertSeverity.MAJOR, condition="value > 1.0")
