"""Flows and rules as text: JSON and YAML both parse, export is stable and
round-trips (property test over generated flows), YAML errors name the line, and
YAML 1.1 traps (``on:``, ``no``) read the way people mean them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.rules.flows import flow_text, parse_flow, run_flow_tests
from trellis.rules.store import parse_rule, rule_text
from trellis.rules.text import Format

YAML_FLOW = Path(__file__).parent / "flows" / "vibration.yaml"

_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
_words = st.text(max_size=12)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _finite, _words)


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    """A valid flow with awkward text and numbers everywhere YAML could trip on them."""
    names = draw(st.lists(_ids, min_size=6, max_size=6, unique=True))
    source, window, condition, alert, command, desired = names
    select: dict[str, Any] = {
        "models": draw(st.lists(_words, max_size=3)),
        "sites": draw(st.lists(_words, max_size=2)),
        "attributes": draw(st.dictionaries(_words, _scalars.filter(lambda v: v is not None))),
    }
    nodes: list[dict[str, Any]] = [
        {"id": source, "type": "source", "metric": draw(_ids), "select": select},
        {"id": window, "type": "window", "kind": "sliding", "size_s": draw(st.floats(0.5, 600))},
        {
            "id": condition,
            "type": "condition",
            "condition": draw(st.sampled_from(["window.avg > 1.0", "value < -2.5", "true"])),
            "for_s": draw(st.floats(0, 3600)),
        },
        {"id": alert, "type": "alert", "severity": "minor", "name": draw(_words)},
        {
            "id": command,
            "type": "command",
            "name": "set-mode",
            "args": draw(st.dictionaries(_words, _scalars, max_size=4)),
            "on": draw(st.sampled_from([["raise"], ["clear"], ["raise", "clear"]])),
        },
        {"id": desired, "type": "desired", "state": {draw(_words): draw(_words)}},
    ]
    device = draw(_words)
    return {
        "id": draw(_ids),
        "name": draw(_words),
        "enabled": draw(st.booleans()),
        "nodes": nodes,
        "edges": [
            [source, window],
            [window, condition],
            [condition, alert],
            [condition, command],
            [condition, desired],
        ],
        "tests": [
            {
                "name": draw(_words),
                "readings": [[device, draw(_finite), draw(_finite)] for _ in range(3)],
                "expect": [["raise", device, draw(_finite), condition]],
                "devices": {device: {"site": draw(_words)}},
            }
        ],
        "layout": {source: [draw(_finite), draw(_finite)]},
    }


@settings(max_examples=60, deadline=None)
@given(flows(), st.sampled_from(["json", "yaml"]))
def test_flow_text_round_trips_and_is_a_fixed_point(data: dict[str, Any], fmt: Format) -> None:
    """parse(export(flow)) is the flow, and exporting again gives the same text."""
    flow = parse_flow(data)
    text = flow_text(flow, fmt)
    assert parse_flow(text) == flow
    assert flow_text(parse_flow(text), fmt) == text
    assert text.endswith("\n")
    assert not text.endswith("\n\n")


def test_a_yaml_flow_file_carries_tests_that_pass() -> None:
    """The YAML example (with an unquoted `on:` key) parses and its own test passes."""
    flow = parse_flow(YAML_FLOW.read_text())
    command = flow.nodes[4]
    assert getattr(command, "on", None) == ["raise"]
    [result] = run_flow_tests(flow)
    assert result.passed, result.actual
    assert parse_flow(flow_text(flow, "yaml")) == flow


def test_yaml_errors_name_the_line() -> None:
    """A bad condition names its line; malformed YAML names line and column; a
    YAML 1.1 `no` stays the string it looks like."""
    lines = YAML_FLOW.read_text().splitlines()
    at = lines.index("    condition: window.avg > 7.0")
    lines[at] = "    condition: window.avg >"
    node = lines.index("  - id: high") + 1
    with pytest.raises(ValueError, match=rf"\$\.nodes\[2\] \(line {node}\) \(high\)"):
        parse_flow("\n".join(lines))
    with pytest.raises(
        ValueError, match=r"YAML is malformed at line 3, column 1: expected the node content"
    ):
        parse_flow("id: x\nnodes: [\n")
    rule = parse_rule("id: r\nmetric: m\nseverity: minor\ncondition: site == 'no'\nname: no\n")
    assert rule.name == "no"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"\$\.severity` \(line 3\)"):
        parse_rule("id: r\nmetric: m\nseverity: loud\ncondition: 'true'\n")
    with pytest.raises(ValueError, match="expected an object"):
        parse_rule("- just\n- a list\n")


def test_rule_text_as_yaml_round_trips() -> None:
    """A stream rule with actions exports as YAML and reads back equal."""
    rule = parse_rule(
        {
            "id": "r",
            "metric": "temperature",
            "severity": "major",
            "condition": "value > 80.0",
            "actions": [
                {"type": "command", "name": "stop", "on": ["raise", "clear"]},
                {"type": "emit", "metric": "overheat", "value": 1.0},
            ],
        }
    )
    text = rule_text(rule, "yaml")
    assert "type: command" in text
    assert parse_rule(text) == rule
