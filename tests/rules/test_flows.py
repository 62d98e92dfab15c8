"""Flows: typed DAGs compiled to stream rules, their unit tests, text form, store, deploy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import TENANT
from trellis.core.errors import NotFoundError
from trellis.rules import RuleStore
from trellis.rules.flows import compile_flow, flow_text, parse_flow, run_flow_tests
from trellis.rules.flowstore import FlowStore

FLOW_FILE = Path(__file__).parent / "flows" / "chiller.json"


def flow_data() -> dict[str, Any]:
    """The example flow as a mapping to change."""
    data: dict[str, Any] = json.loads(FLOW_FILE.read_text())
    return data


def _refused(data: dict[str, Any]) -> str:
    with pytest.raises(ValueError, match="invalid flow") as caught:
        parse_flow(data)
    return str(caught.value)


def test_a_flow_compiles_to_one_stream_rule_per_condition() -> None:
    """source → filter → window → condition → alert is one rule with where, window, for_s."""
    [rule] = compile_flow(parse_flow(FLOW_FILE.read_text()))
    assert rule.id == "flow.pump-overheat.hot"
    assert (rule.metric, rule.where, rule.for_s) == ("temperature", "(value > -40.0)", 2)
    assert rule.window is not None
    assert (rule.window.kind, rule.window.size_s) == ("sliding", 5)
    assert rule.select.models == ["pump"]


def test_the_flow_s_own_unit_tests_pass() -> None:
    """The tests carried in the flow file run through the runtime and pass."""
    results = run_flow_tests(parse_flow(FLOW_FILE.read_text()))
    assert [(r.name, r.passed) for r in results] == [
        ("a hot pump pages after two seconds and clears below 75", True),
        ("a glitch reading of -99 does not drag the average down", True),
    ]


def test_a_failing_flow_test_shows_what_came_out() -> None:
    """A wrong expectation fails and reports the actual transitions."""
    data = flow_data()
    data["tests"][0]["expect"][0][2] = 4
    [first, _] = run_flow_tests(parse_flow(data))
    assert not first.passed
    assert ("raise", "pump-1", 3.0, "hot") in first.actual


def test_a_cycle_is_refused_with_its_path() -> None:
    """A wire back from the window to the filter is a cycle, named node by node."""
    data = flow_data()
    data["nodes"].insert(2, {"id": "f2", "type": "filter", "where": "true"})
    data["edges"] = [["temp", "valid"], ["valid", "f2"], ["f2", "valid"], ["f2", "avg"],
                     ["avg", "hot"], ["hot", "page"]]  # fmt: skip
    assert "cycle f2 → valid → f2" in _refused(data)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["edges"].append(["temp", "ghost"]), "$.edges[4]: unknown node 'ghost'"),
        (
            lambda d: d["edges"].append(["page", "temp"]),
            "alert node 'page' cannot feed source node 'temp'",
        ),
        (
            lambda d: d["edges"].append(["temp", "page"]),
            "source node 'temp' cannot feed alert node 'page'",
        ),
        (lambda d: d["nodes"][3].update(condition="window.avg >"), "$.condition"),
        (lambda d: d["nodes"][2].update(size_s=0), "size_s = 0"),
        (lambda d: d["nodes"].append({"id": "hot", "type": "alert", "severity": "minor"}), "twice"),
        (lambda d: d["nodes"][0].update(type="sink"), "$.nodes[0]"),
        (lambda d: d.update(edges=d["edges"][:-1]), "exactly one alert node"),
        (lambda d: d["edges"].append(["temp", "hot"]), "needs exactly one input, has 2"),
    ],
)
def test_bad_flows_are_refused_naming_the_place(change: Any, expected: str) -> None:
    """Each bad graph or node is refused with the edge or node it concerns."""
    data = copy.deepcopy(flow_data())
    change(data)
    assert expected in _refused(data)


def test_flow_text_is_stable() -> None:
    """Export is sorted, indented JSON: parse(text) round-trips and text is a fixed point."""
    flow = parse_flow(FLOW_FILE.read_text())
    text = flow_text(flow)
    assert parse_flow(text) == flow
    assert flow_text(parse_flow(text)) == text
    assert text.endswith("}\n")


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=12))
def test_any_wiring_is_accepted_or_refused_cleanly(pairs: list[tuple[int, int]]) -> None:
    """Random wires between six filter nodes never crash the checker."""
    nodes = [{"id": "s", "type": "source", "metric": "m"}] + [
        {"id": f"n{i}", "type": "filter", "where": "true"} for i in range(6)
    ]
    edges = [["s", "n0"]] + [[f"n{a}", f"n{b}"] for a, b in pairs]
    with pytest.raises(ValueError, match="invalid flow"):
        parse_flow({"id": "x", "nodes": nodes, "edges": edges})


def test_store_versions_deploy_and_revert(metadata_engine: sa.Engine) -> None:
    """Each save is a version; deploy writes the rules; revert redeploys an old version."""
    rules = RuleStore(metadata_engine)
    flows = FlowStore(metadata_engine, rules)
    first = flows.save(TENANT, parse_flow(FLOW_FILE.read_text()))
    deployed = flows.deploy(TENANT, "pump-overheat")
    assert (first.version, deployed.deployed) == (1, True)
    [(_, rule)] = rules.find(TENANT)
    assert rule.condition == "window.avg > 80.0"  # type: ignore[union-attr]
    changed = flow_data()
    changed["nodes"][3]["condition"] = "window.avg > 85.0"
    flows.save(TENANT, parse_flow(changed))
    flows.deploy(TENANT, "pump-overheat")
    assert rules.get(TENANT, "flow.pump-overheat.hot").condition == "window.avg > 85.0"  # type: ignore[union-attr]
    reverted = flows.revert(TENANT, "pump-overheat", 1)
    assert reverted.version == 3
    assert rules.get(TENANT, "flow.pump-overheat.hot").condition == "window.avg > 80.0"  # type: ignore[union-attr]
    assert [v.deployed for v in flows.versions(TENANT, "pump-overheat")] == [True, False, False]
    flows.delete(TENANT, "pump-overheat")
    assert rules.find(TENANT) == []
    with pytest.raises(NotFoundError):
        flows.latest(TENANT, "pump-overheat")


def test_a_sequence_condition_in_a_flow() -> None:
    """A condition node with a sequence compiles to A-then-B and its flow test passes."""
    data = {
        "id": "surge",
        "nodes": [
            {"id": "p", "type": "source", "metric": "pressure"},
            {
                "id": "drop-then-spike",
                "type": "condition",
                "condition": "value < 1.0",
                "sequence": {"then": "value > 9.0", "within_s": 10},
            },
            {"id": "a", "type": "alert", "severity": "major"},
        ],
        "edges": [["p", "drop-then-spike"], ["drop-then-spike", "a"]],
        "tests": [
            {
                "name": "drop then spike within 10 s",
                "readings": [["pump-1", 0, 0.5], ["pump-1", 4, 5.0], ["pump-1", 8, 9.5]],
                "expect": [["raise", "pump-1", 8, "drop-then-spike"]],
            }
        ],
    }
    [result] = run_flow_tests(parse_flow(data))
    assert result.passed, result.actual


def test_a_transform_node_compiles_and_cannot_follow_a_window() -> None:
    """A transform node becomes the rule's transform; a window cannot feed a transform."""
    data = {
        "id": "fahrenheit",
        "nodes": [
            {"id": "t", "type": "source", "metric": "temperature"},
            {"id": "f", "type": "transform", "expression": "value * 1.8 + 32.0"},
            {"id": "c", "type": "condition", "condition": "value > 212.0"},
            {"id": "a", "type": "alert", "severity": "minor"},
        ],
        "edges": [["t", "f"], ["f", "c"], ["c", "a"]],
    }
    [rule] = compile_flow(parse_flow(data))
    assert rule.transform == "value * 1.8 + 32.0"
    data["nodes"].insert(1, {"id": "w", "type": "window", "kind": "sliding", "size_s": 5})
    data["edges"] = [["t", "w"], ["w", "f"], ["f", "c"], ["c", "a"]]
    assert "window node 'w' cannot feed transform node 'f'" in _refused(data)
