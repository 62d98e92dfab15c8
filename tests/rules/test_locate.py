"""Errors in rule and flow files name the line of the offending field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.rules import parse_rule
from trellis.rules.flows import parse_flow
from trellis.rules.locate import line_of

RULE_TEXT = """{
  "id": "r",
  "metric": "temperature",
  "severity": "major",
  "window": {
    "kind": "sliding",
    "size_s": 0
  },
  "condition": "window.avg > 1.0"
}
"""


def test_a_bad_window_names_its_line() -> None:
    """A zero window size points at the window, which starts on line 5."""
    with pytest.raises(ValueError, match=r"\$\.window` \(line 5\)"):
        parse_rule(RULE_TEXT)


def test_a_bad_cel_condition_names_its_line() -> None:
    """A CEL error in the condition points at the condition's line."""
    text = RULE_TEXT.replace('"size_s": 0', '"size_s": 5').replace("window.avg > 1.0", "value >")
    with pytest.raises(ValueError, match=r"\$\.condition` \(line 9\)|\$\.condition \(line 9\)"):
        parse_rule(text)


def test_a_bad_flow_node_names_its_line() -> None:
    """A refused node in a flow file points at the node's line."""
    flow = {
        "id": "f",
        "nodes": [
            {"id": "s", "type": "source", "metric": "m"},
            {"id": "c", "type": "condition", "condition": "value >"},
            {"id": "a", "type": "alert", "severity": "major"},
        ],
        "edges": [["s", "c"], ["c", "a"]],
    }
    text = json.dumps(flow, indent=2)
    expected = text.splitlines().index("    {", 8) + 1  # the second node's opening brace
    with pytest.raises(ValueError, match=rf"\$\.nodes\[1\] \(line {expected}\)"):
        parse_flow(text)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3)
        ),
        max_leaves=10,
    ),
    st.sampled_from([None, 1, 2]),
)
def test_every_path_of_any_document_has_a_line(document: object, indent: int | None) -> None:
    """line_of finds a line for the root of any JSON text and never raises."""
    text = json.dumps(document, indent=indent)
    assert line_of(text, "$") == 1
    assert line_of(text, "$.missing[3].x") in (1, None)
