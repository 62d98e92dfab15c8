"""Rules in the metadata database, one JSON definition per (tenant, rule id)."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.rules.locate import with_line
from trellis.rules.model import ThresholdRule
from trellis.rules.spec import StreamRule
from trellis.rules.text import Format, dump, load
from trellis.store.metadata import rules

__all__ = ["AnyRule", "RuleStore", "emission_cycle", "parse_rule", "rule_text"]

AnyRule = ThresholdRule | StreamRule


def parse_rule(definition: bytes | str | dict[str, object]) -> AnyRule:
    """A rule from JSON or YAML text, or a mapping; ``ValueError`` names the offending
    field and, from text, the line.

    A definition with a ``threshold`` is a :class:`ThresholdRule`; any other is a
    :class:`StreamRule`.
    """
    text: str | None = None
    if isinstance(definition, bytes | str):
        text = definition.decode(errors="replace") if isinstance(definition, bytes) else definition
        data = load(text, "rule")
    else:
        data = definition
    if not isinstance(data, dict):
        raise ValueError("invalid rule: expected an object (a mapping of fields)")
    kind: type[AnyRule] = ThresholdRule if "threshold" in data else StreamRule
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        message = f"invalid rule: {exc}"
        raise ValueError(with_line(message, text) if text else message) from None


def rule_text(rule: AnyRule, fmt: Format = "json") -> str:
    """Stable, diff-friendly JSON or YAML for a rule file: sorted keys, two-space indent."""
    return dump(msgspec.to_builtins(rule), fmt)


def emission_cycle(rules: list[AnyRule]) -> list[str]:
    """A loop of derived metrics as ``[metric, rule, metric, …]``, or ``[]``.

    A rule that watches metric A and emits B is an edge A → B; a path back to A means
    every emission would, through the other rules, feed the first one again.
    """
    edges: dict[str, list[tuple[str, str]]] = {}
    for rule in rules:
        if isinstance(rule, StreamRule) and rule.enabled:
            for emitted in sorted(rule.emits):
                edges.setdefault(rule.metric, []).append((rule.id, emitted))
    done: set[str] = set()

    def visit(metric: str, path: list[str]) -> list[str]:
        for rule_id, emitted in edges.get(metric, []):
            if emitted in path[::2]:
                start = path.index(emitted)
                return [*path[start:], rule_id, emitted]
            if emitted not in done:
                found = visit(emitted, [*path, rule_id, emitted])
                if found:
                    return found
        done.add(metric)
        return []

    for metric in sorted(edges):
        found = visit(metric, [metric])
        if found:
            return found
    return []


class RuleStore:
    """Create, replace, list and delete a tenant's rules."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> sa.Engine:
        """The metadata database the rules live in (the engine checkpoints there too)."""
        return self._engine

    def put(self, tenant: str, rule: AnyRule) -> AnyRule:
        """Save ``rule``, replacing the rule with the same id.

        ``ValueError`` when its derived metrics would close a loop with the tenant's
        other rules (A emits B, B's rule emits A): nothing is saved then.
        """
        if isinstance(rule, StreamRule) and rule.emits:
            others = [r for _, r in self.find(tenant) if r.id != rule.id]
            cycle = emission_cycle([*others, rule])
            if cycle:
                shown = " → ".join(
                    f"rule {part}" if i % 2 else part for i, part in enumerate(cycle)
                )
                raise ValueError(
                    f"rule {rule.id!r} closes a loop of derived metrics: {shown}; "
                    "each emission would feed the loop again"
                )
        values = {
            "definition": msgspec.to_builtins(rule),
            "enabled": rule.enabled,
            "updated_ms": now_ms(),
        }
        with self._engine.begin() as connection:
            updated = connection.execute(
                rules.update().where(rules.c.tenant == tenant, rules.c.id == rule.id).values(values)
            ).rowcount
            if not updated:
                connection.execute(rules.insert().values(tenant=tenant, id=rule.id, **values))
        return rule

    def get(self, tenant: str, rule_id: str) -> AnyRule:
        """One rule, or :class:`NotFoundError`."""
        with self._engine.connect() as connection:
            definition = connection.execute(
                sa.select(rules.c.definition).where(rules.c.tenant == tenant, rules.c.id == rule_id)
            ).scalar_one_or_none()
        if definition is None:
            raise NotFoundError("rule", rule_id)
        return parse_rule(definition)

    def find(self, tenant: str | None = None) -> list[tuple[str, AnyRule]]:
        """``(tenant, rule)`` pairs, for one tenant or all, ordered by id."""
        query = sa.select(rules.c.tenant, rules.c.definition).order_by(rules.c.tenant, rules.c.id)
        if tenant is not None:
            query = query.where(rules.c.tenant == tenant)
        with self._engine.connect() as connection:
            return [(row.tenant, parse_rule(row.definition)) for row in connection.execute(query)]

    def set_enabled(self, tenant: str, rule_id: str, enabled: bool) -> AnyRule:
        """Enable or disable a rule without changing anything else."""
        rule = msgspec.structs.replace(self.get(tenant, rule_id), enabled=enabled)
        return self.put(tenant, rule)

    def delete(self, tenant: str, rule_id: str) -> None:
        """Remove a rule; :class:`NotFoundError` when it does not exist."""
        with self._engine.begin() as connection:
            deleted = connection.execute(
                rules.delete().where(rules.c.tenant == tenant, rules.c.id == rule_id)
            ).rowcount
        if not deleted:
            raise NotFoundError("rule", rule_id)
