"""Stream rules refuse bad input on save, naming the field and, for CEL, the position."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.rules import StreamRule, ThresholdRule, parse_rule, rule_text

BASE = {"id": "r", "metric": "temperature", "severity": "major"}


def _refused(**fields: object) -> str:
    with pytest.raises(ValueError, match="invalid rule") as caught:
        parse_rule(json.dumps(BASE | fields))
    return str(caught.value)


def test_cel_syntax_error_points_at_line_and_column() -> None:
    """A CEL syntax error names the field, the line and the column."""
    message = _refused(condition="value > ")
    assert "$.condition" in message
    assert "line 1, column 9" in message


def test_cel_type_error_is_refused() -> None:
    """CEL does not coerce: double + int and double > string are refused on save."""
    assert "type error" in _refused(condition="value + 1 > 2.0")
    assert "type error" in _refused(condition='value > "hot"')


def test_a_condition_must_be_boolean() -> None:
    """An expression that yields a number is not a condition."""
    assert "true or false" in _refused(condition="value * 2.0")


def test_unknown_variables_and_aggregates_are_refused() -> None:
    """Typos in variable or aggregate names are caught before the rule runs."""
    assert "unknown variable(s) valu" in _refused(condition="valu > 1.0")
    windowed = {"kind": "sliding", "size_s": 60}
    assert "window.median" in _refused(condition="window.median > 1.0", window=windowed)
    assert "no window" in _refused(condition="window.avg > 1.0")


def test_macro_variables_are_not_unknown() -> None:
    """Names bound by CEL macros (exists, all…) are accepted."""
    rule = parse_rule(json.dumps(BASE | {"condition": 'tags.exists(t, t == "critical")'}))
    assert isinstance(rule, StreamRule)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"kind": "sliding", "size_s": 0}, "size_s = 0"),
        ({"kind": "tumbling", "size_s": 10 * 365 * 86400}, "one week"),
        ({"kind": "session"}, "gap_s = 0"),
        ({"kind": "hopping", "size_s": 5}, "$.window.kind"),
    ],
)
def test_windows_of_zero_or_ten_years_are_refused(window: dict[str, object], expected: str) -> None:
    """A window must be longer than zero and at most a week."""
    assert expected in _refused(condition="window.avg > 1.0", window=window)


def test_other_bad_fields_are_named() -> None:
    """Unknown fields, negative durations, bad webhooks and empty rules name the field."""
    assert "oops" in _refused(condition="true", oops=1)
    assert "$.for_s" in _refused(condition="true", for_s=-1)
    assert "http://" in _refused(condition="true", actions=[{"type": "webhook", "url": "ftp://x"}])
    assert "needs a condition" in _refused()
    assert "absence_s is a rule of its own" in _refused(condition="true", absence_s=60)


def test_json_syntax_error_names_the_line() -> None:
    """Malformed JSON is refused with its line and column."""
    with pytest.raises(ValueError, match="line 3, column 2"):
        parse_rule('{"id": "r",\n "metric": "t"\n,,}')


def test_threshold_rules_still_parse() -> None:
    """A definition with a threshold is the original threshold rule."""
    rule = parse_rule('{"id": "x", "metric": "t", "op": ">", "threshold": 1, "severity": "major"}')
    assert isinstance(rule, ThresholdRule)


@given(
    st.sampled_from(["value > 80.0", "window.avg > 1.0 && value < 9.0", "true"]),
    st.floats(min_value=0, max_value=3600),
    st.booleans(),
)
def test_rule_text_round_trips(condition: str, for_s: float, enabled: bool) -> None:
    """rule_text is stable: parse(text(rule)) == rule and text(parse(text)) == text."""
    rule = parse_rule(
        BASE
        | {
            "condition": condition,
            "for_s": for_s,
            "enabled": enabled,
            "window": {"kind": "sliding", "size_s": 60},
        }
    )
    text = rule_text(rule)
    assert parse_rule(text) == rule
    assert rule_text(parse_rule(text)) == text


@given(st.text(max_size=40))
def test_any_condition_text_is_accepted_or_refused_cleanly(source: str) -> None:
    """Whatever the text, parsing either succeeds or raises ValueError, never crashes."""
    with contextlib.suppress(ValueError):
        parse_rule(BASE | {"condition": source})
