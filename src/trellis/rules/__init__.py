"""Rules: conditions over readings that raise and clear alerts, and run actions."""

from trellis.rules.actions import ActionDispatcher, RuleDeadLetter
from trellis.rules.engine import RuleEngine, RuleStats
from trellis.rules.model import COMPARATORS, ThresholdRule
from trellis.rules.runtime import CompiledRule, SeriesState, Signal, compile_rule
from trellis.rules.spec import Selector, Sequence, StreamRule, WebhookAction, Window
from trellis.rules.store import AnyRule, RuleStore, parse_rule, rule_text

__all__ = [
    "COMPARATORS",
    "ActionDispatcher",
    "AnyRule",
    "CompiledRule",
    "RuleDeadLetter",
    "RuleEngine",
    "RuleStats",
    "RuleStore",
    "Selector",
    "Sequence",
    "SeriesState",
    "Signal",
    "StreamRule",
    "ThresholdRule",
    "WebhookAction",
    "Window",
    "compile_rule",
    "parse_rule",
    "rule_text",
]
