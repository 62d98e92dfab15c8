"""What each node of a deployed flow did, from the counters of the rules it compiled to.

A flow runs as rules (``flow.<flow>.<condition>``), so its nodes' numbers are the
rules' numbers seen per node: a condition node shows its rule; the source, filter,
transform and window nodes above it show what flowed through them into it; an action
node shows its condition's delivered and failed actions; a model node shows the
model's calls, rows, errors, timeouts and latency, with the fallbacks its conditions
read; a sub-flow node sums the rules it included.
"""

from __future__ import annotations

import msgspec

from trellis.rules.engine import ModelStats, RuleStats
from trellis.rules.flows import (
    ConditionNode,
    Flow,
    ModelNode,
    SourceNode,
    SubflowNode,
    rule_id_for,
)

__all__ = ["NodeStats", "flow_node_stats"]


class NodeStats(msgspec.Struct):
    """One node's throughput, latency and errors since the engine started."""

    node: str
    type: str
    rules: list[str]
    readings: int = 0
    raised: int = 0
    cleared: int = 0
    errors: int = 0
    actions_delivered: int = 0
    actions_failed: int = 0
    busy_ns: int = 0
    model_calls: int = 0
    model_rows: int = 0
    model_timeouts: int = 0
    model_fallbacks: int = 0
    last_error: str = ""

    @property
    def mean_latency_us(self) -> float:
        """Mean time per reading (per model call for a model node)."""
        count = self.model_calls if self.type == "model" else self.readings
        return self.busy_ns / count / 1000 if count else 0.0


def _add(into: NodeStats, rule: RuleStats) -> None:
    into.readings += rule.readings
    into.raised += rule.raised
    into.cleared += rule.cleared
    into.errors += rule.errors
    into.actions_delivered += rule.actions_delivered
    into.actions_failed += rule.actions_failed
    into.busy_ns += rule.busy_ns
    into.model_fallbacks += rule.model_fallbacks
    into.last_error = rule.last_error or into.last_error


def _upstream(flow: Flow, node_id: str) -> set[str]:
    """The nodes above ``node_id`` (its chain back to the source)."""
    inputs: dict[str, list[str]] = {}
    for source, target in flow.edges:
        inputs.setdefault(target, []).append(source)
    seen: set[str] = set()
    stack = list(inputs.get(node_id, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(inputs.get(current, []))
    return seen


def flow_node_stats(
    flow: Flow, rules: list[RuleStats], models: list[ModelStats]
) -> list[NodeStats]:
    """Per node of ``flow`` (in the flow's order), from the engine's counters."""
    by_rule = {stats.rule: stats for stats in rules}
    out = {
        node.id: NodeStats(node.id, str(type(node).__struct_config__.tag), [])
        for node in flow.nodes
    }
    for node in flow.nodes:
        if isinstance(node, SubflowNode):
            prefix = rule_id_for(flow.id, f"{node.id}.")
            for rule_id, included in sorted(by_rule.items()):
                if rule_id.startswith(prefix):
                    out[node.id].rules.append(rule_id)
                    _add(out[node.id], included)
            continue
        if not isinstance(node, ConditionNode):
            continue
        rule_id = rule_id_for(flow.id, node.id)
        stats = by_rule.get(rule_id)
        if stats is None:
            continue  # not deployed (or disabled)
        targets = [t for s, t in flow.edges if s == node.id]
        for member in [node.id, *_upstream(flow, node.id), *targets]:
            out[member].rules.append(rule_id)
            if member == node.id or member in targets:
                _add(out[member], stats)
            else:
                out[member].readings += stats.readings
    for node in flow.nodes:
        if isinstance(node, ModelNode):
            found = next((m for m in models if m.model == node.model), None)
            stats_of = out[node.id]
            stats_of.readings = stats_of.model_fallbacks = 0
            for rule_id in stats_of.rules:
                rule = by_rule[rule_id]
                stats_of.readings += rule.readings
                stats_of.model_fallbacks += rule.model_fallbacks
            if found is not None:
                stats_of.model_calls = found.calls
                stats_of.model_rows = found.rows
                stats_of.model_timeouts = found.timeouts
                stats_of.errors = found.errors
                stats_of.busy_ns = found.busy_ns
                stats_of.last_error = found.last_error
        elif isinstance(node, SourceNode):
            out[node.id].busy_ns = 0
    return [out[node.id] for node in flow.nodes]
