"""The asset tree: Brick files in and out, queries by class and place, refusals."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.services import postgres_url
from trellis.core.errors import ConflictError
from trellis.core.types import Device
from trellis.devices.models import DeviceModel, MetricSpec
from trellis.semantic import (
    UNPLACED,
    CycleError,
    Node,
    Relation,
    SemanticError,
    SemanticModel,
    UnknownClassError,
    check_nodes,
    export_turtle,
    find_cycle,
    parse_turtle,
)
from trellis.store.metadata import open_metadata

BRICK = Path(__file__).parent.parent / "data" / "brick"
B2 = (BRICK / "building-b2.ttl").read_text()
B2_NODES = {node.id: node for node in parse_turtle(B2)[0]}
_tenants = itertools.count(1)


@pytest.fixture
def model(metadata_engine: sa.Engine) -> SemanticModel:
    """Building B2 imported for tenant ``default``."""
    semantic = SemanticModel(metadata_engine)
    nodes, relations = parse_turtle(B2)
    semantic.put("default", nodes, relations, replace=True)
    return semantic


def _ids(nodes: list[Node]) -> list[str]:
    return [node.id for node in nodes]


def test_b2_imports_as_a_tree_with_relations(model: SemanticModel) -> None:
    """Site → building → floors → rooms and zones → equipment → points; feeds kept beside."""
    [site] = model.tree("default")
    assert (site.id, site.kind) == ("riverside", "location")
    [b2] = site.children
    assert [floor.id for floor in b2.children] == ["B2-F1", "B2-F2", "B2-main-meter"]
    ahu = model.get("default", "AHU-1")
    assert (ahu.parent, ahu.name, ahu.kind) == ("B2-mech", "Air handler 1", "equipment")
    assert model.get("default", "AHU-1-SF").parent == "AHU-1"  # hasPart between equipment
    assert model.get("default", "CHWP-2").parent == "B2-mech"  # isPartOf, not hasLocation
    sat = model.get("default", "AHU-1-SAT")
    assert (sat.device, sat.metric, sat.parent) == ("ahu-1", "sat", "AHU-1")
    relations = {(r.subject, r.predicate, r.object) for r in model.relations("default")}
    assert ("AHU-1", "feeds", "VAV-101") in relations
    assert ("CH-1", "feeds", "CHWP-2") in relations  # written as CHWP-2 isFedBy CH-1
    assert ("CH-1-meter", "hasLocation", "B2-mech") in relations


def test_points_by_class_include_subclasses_and_by_place(model: SemanticModel) -> None:
    """ "All supply air temperature sensors in building B2" includes the discharge air one;
    places follow hasLocation (a VAV located in a zone is in that zone's floor)."""
    assert _ids(model.points("default", "Supply_Air_Temperature_Sensor", "B2")) == [
        "AHU-1-SAT",
        "VAV-101-DAT",
    ]
    assert _ids(model.points("default", "Zone_Air_Temperature_Sensor", "B2-F1")) == [
        "VAV-101-ZAT",
        "VAV-102-ZAT",
    ]
    assert len(model.points("default", "Temperature_Sensor")) == 9
    assert _ids(model.points("default", None, "CH-1")) == [
        "CH-1-CHWRT",
        "CH-1-CHWST",
        "CH-1-load",
        "CH-1-power",
    ]
    # tags are inherited from what contains the point
    assert _ids(model.points("default", tags=["critical"])) == ["VAV-201-ZAT", "VAV-201-ZAT-SP"]
    assert model.resolve("default", ["Bearing_Vibration_Sensor"], []) == {
        ("pump-b2-1", "vibration"),
        ("pump-b2-2", "vibration"),
    }
    with pytest.raises(UnknownClassError, match="did you mean 'Zone_Air_Temperature_Sensor'"):
        model.points("default", "Zone_Air_Temprature_Sensor")


def test_export_reads_back_unchanged_and_survives_a_restart(
    model: SemanticModel, metadata_engine: sa.Engine
) -> None:
    """Export → import gives the same nodes and relations; a new process loads them."""
    text = export_turtle("default", model.nodes("default"), model.relations("default"))
    assert "brick:hasPoint" in text
    assert "trellis:device" in text
    nodes, relations = parse_turtle(text)
    assert sorted(nodes, key=lambda n: n.id) == model.nodes("default")
    assert relations == model.relations("default")
    reopened = SemanticModel(metadata_engine)
    assert reopened.nodes("default") == model.nodes("default")
    assert reopened.relations("default") == model.relations("default")


def test_brick_file_with_an_unknown_class_is_refused_and_nothing_stored(
    metadata_engine: sa.Engine,
) -> None:
    """The class is named, with the closest known one, and the tenant's model is untouched."""
    semantic = SemanticModel(metadata_engine)
    with pytest.raises(UnknownClassError) as caught:
        parse_turtle((BRICK / "unknown-class.ttl").read_text())
    assert "'Supply_Fann'" in str(caught.value)
    assert "did you mean 'Supply_Fan'?" in str(caught.value)
    assert semantic.nodes("default") == []


def test_cycle_in_a_brick_file_is_refused_naming_the_cycle(metadata_engine: sa.Engine) -> None:
    """B9 ⊂ W ⊂ F1 ⊂ B9 is refused, the loop spelt out; nothing is written."""
    semantic = SemanticModel(metadata_engine)
    nodes, relations = parse_turtle((BRICK / "cycle.ttl").read_text())
    with pytest.raises(CycleError, match=r"cycle in the asset tree: B9 → W → F1 → B9"):
        semantic.put("default", nodes, relations, replace=True)
    assert semantic.nodes("default") == []
    assert SemanticModel(metadata_engine).nodes("default") == []


def test_moving_a_node_under_its_own_descendant_is_refused(model: SemanticModel) -> None:
    """Putting the building under one of its floors would make a loop: refused, unchanged."""
    b2 = model.get("default", "B2")
    with pytest.raises(CycleError) as caught:
        model.put("default", [Node("B2", b2.brick_class, parent="B2-F1")])
    assert caught.value.cycle == ["B2", "B2-F1", "B2"]
    assert model.get("default", "B2").parent == "riverside"


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (Node("x", "Zone", parent="nowhere"), "parent 'nowhere' does not exist"),
        (Node("x", "Zone", parent="AHU-1-SAT"), "is a point, which has no parts"),
        (Node("x", "Temperature_Sensor", device="d"), "binds both a device and a metric"),
        (Node("x", "AHU", device="d", metric="m"), "only points are bound"),
        (Node("x", "Temperature_Sensor", device="ahu-1", metric="sat"), "both bind ahu-1/sat"),
        (Node("bad id", "Zone"), "must be letters, digits"),
        (Node("x", "Room_With_A_View"), "unknown Brick class 'Room_With_A_View'"),
    ],
)
def test_bad_nodes_are_refused(node: Node, message: str) -> None:
    """Each malformed node joining B2 is refused with a message that names what is wrong
    (the pure check :meth:`SemanticModel.put` runs before it writes anything)."""
    with pytest.raises(SemanticError, match=message):
        check_nodes(B2_NODES, [node])


def test_a_node_with_children_is_not_deleted(model: SemanticModel) -> None:
    """Deleting AHU-1 would orphan its points: 409-style ConflictError; a leaf goes."""
    with pytest.raises(ConflictError, match="has children"):
        model.delete("default", "AHU-1")
    model.delete("default", "AHU-1-SAT")
    assert "AHU-1-SAT" not in {n.id for n in model.nodes("default")}


def test_a_device_model_with_brick_classes_places_its_device(model: SemanticModel) -> None:
    """Typed properties become points under an equipment node; again changes nothing."""
    rtu = DeviceModel(
        name="rtu",
        version="1",
        description="rooftop unit",
        brick_class="RTU",
        metrics={
            "sat": MetricSpec("Cel", brick_class="Supply_Air_Temperature_Sensor"),
            "filter_hours": MetricSpec("h"),
        },
    )
    placed = model.place_device(Device("default", "rtu-1", "rtu", site="B2-F2"), rtu)
    assert _ids(placed) == ["rtu-1", "rtu-1.sat"]
    assert model.get("default", "rtu-1").parent == "B2-F2"
    assert model.place_device(Device("default", "rtu-1", "rtu", site="B2-F2"), rtu) == []
    lost = model.place_device(Device("default", "rtu-2", "rtu", attributes={"location": "x"}), rtu)
    assert _ids(lost) == [UNPLACED, "rtu-2", "rtu-2.sat"]
    assert ("rtu-2", "sat") in model.resolve("default", ["Air_Temperature_Sensor"], [])
    assert ("rtu-1", "sat") in model.resolve("default", ["Temperature_Sensor"], ["B2"])


def test_the_model_works_on_postgresql() -> None:
    """The same import, query and cycle refusal on PostgreSQL, tenant by tenant."""
    engine = open_metadata(postgres_url())
    tenant = f"pg-semantic-{next(_tenants)}"
    try:
        semantic = SemanticModel(engine)
        nodes, relations = parse_turtle(B2)
        semantic.put(tenant, nodes, relations, replace=True)
        again = SemanticModel(engine)
        assert _ids(again.points(tenant, "Supply_Air_Temperature_Sensor", "B2")) == [
            "AHU-1-SAT",
            "VAV-101-DAT",
        ]
        with pytest.raises(CycleError):
            again.put(tenant, [Node("riverside", "Site", parent="B2")])
        assert again.nodes("other-tenant") == []
        semantic.put(tenant, [], replace=True)
        assert SemanticModel(engine).nodes(tenant) == []
    finally:
        engine.dispose()


def _has_loop(parents: dict[str, str | None]) -> bool:
    for start in parents:
        node: str | None = start
        for _ in range(len(parents) + 1):
            node = parents.get(node) if node is not None else None
        if node is not None:
            return True
    return False


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefg"), st.none() | st.sampled_from("abcdefgh")))
def test_find_cycle_finds_a_real_loop_exactly_when_there_is_one(
    parents: dict[str, str | None],
) -> None:
    """On any parent map: a loop is reported iff one exists, and it is a real loop."""
    cycle = find_cycle(parents)
    assert (cycle is not None) == _has_loop(parents)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1
        for child, parent in itertools.pairwise(cycle):
            assert parents[child] == parent


_PLACES = ["Site", "Building", "Floor", "HVAC_Zone", "Room"]
_EQUIPMENT = ["AHU", "VAV", "Chilled_Water_Pump", "Electrical_Meter"]
_POINTS = ["Zone_Air_Temperature_Sensor", "Supply_Air_Flow_Sensor", "Active_Power_Sensor"]


@st.composite
def _models(draw: st.DrawFn) -> tuple[list[Node], list[Relation]]:
    """A random forest: each node's parent is an earlier non-point node; points bound to
    unique series; labels and tags with quotes, newlines and non-ASCII text."""
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
    nodes: list[Node] = []
    for index in range(draw(st.integers(1, 15))):
        containers = [n.id for n in nodes if n.kind != "point"]
        parent = draw(st.none() | st.sampled_from(containers)) if containers else None
        pool = _PLACES + _EQUIPMENT + (_POINTS if parent else [])
        brick_class = draw(st.sampled_from(pool))
        bound = brick_class in _POINTS and draw(st.booleans())
        nodes.append(
            Node(
                f"n{index}",
                brick_class,
                name=draw(text),
                parent=parent,
                device=f"d{index}" if bound else None,
                metric="m" if bound else None,
                tags=sorted(set(draw(st.lists(text.filter(bool), max_size=2)))),
            )
        )
    equipment = [n.id for n in nodes if n.kind == "equipment"]
    relations = (
        sorted(
            {
                Relation(a, "feeds", b)
                for a, b in draw(
                    st.lists(st.tuples(st.sampled_from(equipment), st.sampled_from(equipment)))
                )
            }
        )
        if equipment
        else []
    )
    return nodes, relations


# Drawing a forest node by node is slow on a shared 2-core machine; the check is not.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_models())
def test_any_model_survives_export_and_import(model: tuple[list[Node], list[Relation]]) -> None:
    """Whatever the tree, names and tags: export → parse gives the same nodes and relations."""
    nodes, relations = model
    check_nodes({}, nodes, relations)
    parsed, parsed_relations = parse_turtle(export_turtle("t", nodes, relations))
    assert sorted(parsed, key=lambda n: n.id) == sorted(nodes, key=lambda n: n.id)
    assert parsed_relations == relations


@st.composite
def _changes(draw: st.DrawFn) -> tuple[dict[str, Node], list[Node]]:
    """A valid model and a change to it: new or replaced nodes with any parent and class."""
    nodes, _ = draw(_models())
    existing = {node.id: node for node in nodes}
    ids = [*existing, "new-1", "new-2"]
    incoming = [
        Node(
            draw(st.sampled_from(ids)),
            draw(st.sampled_from(_PLACES + _EQUIPMENT + _POINTS)),
            parent=draw(st.none() | st.sampled_from(ids)),
            device=device,
            metric="m" if device else None,
        )
        for device in draw(st.lists(st.none() | st.sampled_from(["d0", "d1", "x"]), max_size=3))
    ]
    return existing, list({node.id: node for node in incoming}.values())


def _refusal(existing: dict[str, Node], incoming: list[Node]) -> bool:
    try:
        check_nodes(existing, incoming)
    except SemanticError:
        return True
    return False


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_changes())
def test_checking_only_the_change_agrees_with_checking_everything(
    change: tuple[dict[str, Node], list[Node]],
) -> None:
    """The incremental check refuses exactly what a full check of the result refuses."""
    existing, incoming = change
    merged = dict(existing)
    for node in incoming:
        merged[node.id] = node
    assert _refusal(existing, incoming) == _refusal({}, list(merged.values()))
