"""Rules in the metadata database, one JSON definition per (tenant, rule id)."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.rules.model import ThresholdRule
from trellis.store.metadata import rules

__all__ = ["RuleStore", "parse_rule"]


def parse_rule(definition: bytes | str | dict[str, object]) -> ThresholdRule:
    """A rule from JSON text or a mapping; ``ValueError`` names the offending field."""
    try:
        if isinstance(definition, bytes | str):
            return msgspec.json.decode(definition, type=ThresholdRule)
        return msgspec.convert(definition, ThresholdRule)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"invalid rule: {exc}") from exc


class RuleStore:
    """Create, replace, list and delete a tenant's rules."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def put(self, tenant: str, rule: ThresholdRule) -> ThresholdRule:
        """Save ``rule``, replacing the rule with the same id."""
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

    def get(self, tenant: str, rule_id: str) -> ThresholdRule:
        """One rule, or :class:`NotFoundError`."""
        with self._engine.connect() as connection:
            definition = connection.execute(
                sa.select(rules.c.definition).where(rules.c.tenant == tenant, rules.c.id == rule_id)
            ).scalar_one_or_none()
        if definition is None:
            raise NotFoundError("rule", rule_id)
        return parse_rule(definition)

    def find(self, tenant: str | None = None) -> list[tuple[str, ThresholdRule]]:
        """``(tenant, rule)`` pairs, for one tenant or all, ordered by id."""
        query = sa.select(rules.c.tenant, rules.c.definition).order_by(rules.c.tenant, rules.c.id)
        if tenant is not None:
            query = query.where(rules.c.tenant == tenant)
        with self._engine.connect() as connection:
            return [(row.tenant, parse_rule(row.definition)) for row in connection.execute(query)]

    def delete(self, tenant: str, rule_id: str) -> None:
        """Remove a rule; :class:`NotFoundError` when it does not exist."""
        with self._engine.begin() as connection:
            deleted = connection.execute(
                rules.delete().where(rules.c.tenant == tenant, rules.c.id == rule_id)
            ).rowcount
        if not deleted:
            raise NotFoundError("rule", rule_id)
