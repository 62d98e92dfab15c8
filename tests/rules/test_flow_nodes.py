"""The model, action and sub-flow nodes of flows: what they compile to, how the
runtime reads a model node's prediction, sub-flows resolved from the store with
their selectors replaced, and the refusals (sub-flow cycles, unknown references)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import TENANT
from trellis.core.types import AlertSeverity
from trellis.rules import RuleStore
from trellis.rules.flows import compile_flow, parse_flow, run_flow_tests
from trellis.rules.flowstore import FlowStore
from trellis.rules.runtime import SeriesState, Signal, compile_rule
from trellis.rules.spec import (
    CommandAction,
    DesiredStateAction,
    EmitAction,
    PredictAction,
    StreamRule,
)

AGREES = "value > 7.0 && prediction.scores < 0.0"


def _agreeing(**model: Any) -> dict[str, Any]:
    """hot vibration AND the anomaly model agrees → alert, command, desired, emit."""
    return {
        "id": "vib",
        "nodes": [
            {"id": "src", "type": "source", "metric": "vibration", "select": {"models": ["pump"]}},
            {"id": "anomaly", "type": "model", "model": "pump-anomaly", **model},
            {"id": "bad", "type": "condition", "condition": AGREES},
            {"id": "page", "type": "alert", "severity": "major"},
            {"id": "slow", "type": "command", "name": "reduce-load", "args": {"pct": 20}},
            {"id": "eco", "type": "desired", "state": {"mode": "eco"}, "on": ["raise", "clear"]},
            {"id": "flag", "type": "emit", "metric": "vib_alarm", "value": 1.0},
            {"id": "score", "type": "predict", "model": "pump-anomaly", "emit": "vib_score"},
        ],
        "edges": [
            ["src", "anomaly"],
            ["anomaly", "bad"],
            ["bad", "page"],
            ["bad", "slow"],
            ["bad", "eco"],
            ["bad", "flag"],
            ["bad", "score"],
        ],
    }


def test_a_model_node_and_action_nodes_compile_into_the_rule() -> None:
    """The model node becomes the rule's model; action nodes become its actions."""
    [rule] = compile_flow(parse_flow(_agreeing(refresh_s=5, fallback=1.0)))
    assert rule.model is not None
    assert (rule.model.name, rule.model.refresh_s, rule.model.fallback) == ("pump-anomaly", 5, 1)
    assert rule.actions == [
        CommandAction(name="reduce-load", args={"pct": 20}),
        DesiredStateAction(state={"mode": "eco"}, on=["raise", "clear"]),
        EmitAction(metric="vib_alarm", value=1.0),
        PredictAction(model="pump-anomaly", emit="vib_score"),
    ]


def test_the_condition_reads_the_model_node_s_prediction() -> None:
    """With predictions from the engine the model decides; without (a dry run, a flow
    test) every output reads the fallback, and that is counted."""
    [rule] = compile_flow(parse_flow(_agreeing()))
    runtime = compile_rule(rule)
    scores = {"pump-1": -0.2, "pump-2": 0.3}
    runtime.predictions = lambda tenant, device: {"scores": scores[device], "label": 1.0}
    out: list[Signal] = []
    for device in scores:
        runtime.feed(SeriesState(), TENANT, device, None, 1000, 9.0, out)
    assert [(s.kind, s.device) for s in out] == [("raise", "pump-1")]
    runtime.predictions = None
    runtime.feed(SeriesState(), TENANT, "pump-3", None, 1000, 9.0, out)
    assert len(out) == 1  # fallback 0.0 is not < 0.0
    assert runtime.fallbacks == 1


def test_a_model_node_must_feed_a_condition_and_be_fed() -> None:
    """A model node wired to an alert, or left dangling, is refused with its place."""
    data = _agreeing()
    data["edges"] = [["src", "anomaly"], ["anomaly", "page"]]
    with pytest.raises(ValueError, match="model node 'anomaly' cannot feed alert node"):
        parse_flow(data)
    data = _agreeing()
    data["edges"] = [e for e in data["edges"] if e != ["anomaly", "bad"]] + [["src", "bad"]]
    with pytest.raises(ValueError, match=r"\(anomaly\): its output is not wired to anything"):
        parse_flow(data)
    data = _agreeing()
    data["nodes"][2]["condition"] = "prediction.scores < 0.0"
    data["edges"] = [["src", "bad"], ["bad", "page"], ["src", "anomaly"], ["anomaly", "bad"]]
    with pytest.raises(ValueError, match="the condition node 'bad' needs exactly one input"):
        parse_flow(data)


def _hot(flow_id: str = "hot", sub: dict[str, Any] | None = None) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": "t", "type": "source", "metric": "temperature", "select": {"models": ["pump"]}},
        {"id": "over", "type": "condition", "condition": "value > 80.0"},
        {"id": "page", "type": "alert", "severity": "minor"},
    ]
    if sub is not None:
        nodes.append({"id": "inc", "type": "subflow", **sub})
    return {"id": flow_id, "nodes": nodes, "edges": [["t", "over"], ["over", "page"]]}


def _outer(ref: str, select: dict[str, Any] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "checks", "type": "subflow", "flow": ref}
    if select is not None:
        node["select"] = select
    return {
        "id": "site-2",
        "nodes": [node],
        "edges": [],
        "tests": [
            {
                "name": "the included condition fires on site 2 only",
                "readings": [["pump-1", 0, 90], ["pump-2", 0, 90]],
                "devices": {"pump-1": {"site": "s1"}, "pump-2": {"site": "s2"}},
                "expect": [["raise", "pump-2", 0, "checks.over"]],
            }
        ],
    }


def test_a_sub_flow_is_included_pinned_and_narrowed(metadata_engine: sa.Engine) -> None:
    """site-2 includes hot@1 narrowed to site s2: its rule is flow.site-2.checks.over;
    a later hot@2 does not change it; the flow's tests run against the store."""
    rules = RuleStore(metadata_engine)
    flows = FlowStore(metadata_engine, rules)
    flows.save(TENANT, parse_flow(_hot()))
    outer = parse_flow(_outer("hot@1", {"models": ["pump"], "sites": ["s2"]}))
    flows.save(TENANT, outer)
    changed = _hot()
    changed["nodes"][1]["condition"] = "value > 99.0"
    flows.save(TENANT, parse_flow(changed))
    flows.deploy(TENANT, "site-2")
    [(_, rule)] = rules.find(TENANT)
    assert rule.id == "flow.site-2.checks.over"
    assert rule.condition == "value > 80.0"  # type: ignore[union-attr]
    assert rule.select.sites == ["s2"]  # type: ignore[union-attr]
    [result] = run_flow_tests(outer, resolve=flows.resolver(TENANT))
    assert result.passed, result.actual
    with pytest.raises(ValueError, match="includes sub-flows: run its tests on the server"):
        run_flow_tests(outer)


def test_sub_flow_cycles_and_bad_references_are_refused(metadata_engine: sa.Engine) -> None:
    """hot@2 including site-2@1 (which includes hot@1) is a cycle; a flow including
    itself too; a missing version and a malformed reference are refused by name."""
    rules = RuleStore(metadata_engine)
    flows = FlowStore(metadata_engine, rules)
    flows.save(TENANT, parse_flow(_hot()))
    flows.save(TENANT, parse_flow(_outer("hot@1")))
    with pytest.raises(ValueError, match="sub-flow cycle hot → site-2 → hot"):
        flows.save(TENANT, parse_flow(_hot(sub={"flow": "site-2@1"})))
    with pytest.raises(ValueError, match="sub-flow cycle hot → hot"):
        parse_flow(_hot(sub={"flow": "hot@1"}))
    with pytest.raises(ValueError, match=r"\(checks\): there is no saved flow hot@7"):
        flows.save(TENANT, parse_flow(_outer("hot@7")))
    with pytest.raises(ValueError, match="must be name@version"):
        parse_flow(_outer("hot"))
    assert [v.version for v in flows.versions(TENANT, "hot")] == [1]


def test_a_flow_closing_a_loop_of_derived_metrics_is_not_deployed(
    metadata_engine: sa.Engine,
) -> None:
    """An emit node may not emit its own source's metric; a flow whose emission closes
    a loop with a saved rule is refused at deploy and changes nothing."""
    data = _hot()
    data["nodes"].append({"id": "flag", "type": "emit", "metric": "temperature"})
    data["edges"].append(["over", "flag"])
    with pytest.raises(ValueError, match="emits 'temperature', the metric it watches"):
        parse_flow(data)
    rules = RuleStore(metadata_engine)
    flows = FlowStore(metadata_engine, rules)
    rules.put(
        TENANT,
        StreamRule(
            id="back",
            metric="overheat",
            severity=AlertSeverity.MINOR,
            condition="value > 0.5",
            actions=[EmitAction(metric="temperature", value=99.0)],
        ),
    )
    data["nodes"][-1]["metric"] = "overheat"
    flows.save(TENANT, parse_flow(data))
    with pytest.raises(ValueError, match="closes a loop of derived metrics: overheat"):
        flows.deploy(TENANT, "hot")
    assert [rule.id for _, rule in rules.find(TENANT)] == ["back"]
