"""Rules: conditions over readings that raise and clear alerts."""

from trellis.rules.engine import RuleEngine
from trellis.rules.evaluate import SeriesState, Transition, evaluate
from trellis.rules.model import COMPARATORS, ThresholdRule
from trellis.rules.store import RuleStore, parse_rule

__all__ = [
    "COMPARATORS",
    "RuleEngine",
    "RuleStore",
    "SeriesState",
    "ThresholdRule",
    "Transition",
    "evaluate",
    "parse_rule",
]
