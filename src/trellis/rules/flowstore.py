"""Flows in the metadata database: every save is a new version; deploy and revert.

Deploying a version compiles it and saves its rules (``flow.<flow>.<node>``) in the
:class:`RuleStore`, removing the rules of conditions the version no longer has, in
one step the engine then reloads. Reverting deploys an earlier version as a new one,
so the history only grows.
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.rules.flows import Flow, Resolver, compile_flow, parse_flow, rule_id_for
from trellis.rules.store import RuleStore, emission_cycle
from trellis.store.metadata import flow_versions

__all__ = ["FlowStore", "FlowVersion"]


class FlowVersion(msgspec.Struct, frozen=True):
    """One saved version of a flow."""

    id: str
    version: int
    deployed: bool
    created_ms: int
    flow: Flow


class FlowStore:
    """Save, list, deploy and revert a tenant's flows."""

    def __init__(self, engine: sa.Engine, rules: RuleStore) -> None:
        self._engine = engine
        self._rules = rules

    def resolver(self, tenant: str) -> Resolver:
        """Finds saved versions of the tenant's flows for sub-flow nodes."""

        def resolve(flow_id: str, version: int) -> Flow:
            query = sa.select(flow_versions.c.definition).where(
                flow_versions.c.tenant == tenant,
                flow_versions.c.id == flow_id,
                flow_versions.c.version == version,
            )
            with self._engine.connect() as c:
                definition = c.execute(query).scalar_one_or_none()
            if definition is None:
                raise LookupError(f"{flow_id}@{version}")
            return parse_flow(definition)

        return resolve

    def save(self, tenant: str, flow: Flow) -> FlowVersion:
        """Store ``flow`` as its next version (validated first, sub-flows resolved and
        checked for cycles; not deployed)."""
        compile_flow(flow, self.resolver(tenant))
        with self._engine.begin() as c:
            latest = c.execute(
                sa.select(sa.func.max(flow_versions.c.version)).where(
                    flow_versions.c.tenant == tenant, flow_versions.c.id == flow.id
                )
            ).scalar_one_or_none()
            version = (latest or 0) + 1
            created = now_ms()
            c.execute(
                flow_versions.insert().values(
                    tenant=tenant,
                    id=flow.id,
                    version=version,
                    definition=msgspec.to_builtins(flow),
                    deployed=False,
                    created_ms=created,
                )
            )
        return FlowVersion(flow.id, version, False, created, flow)

    def versions(self, tenant: str, flow_id: str) -> list[FlowVersion]:
        """Every version, newest first; :class:`NotFoundError` when there is none."""
        query = (
            sa.select(flow_versions)
            .where(flow_versions.c.tenant == tenant, flow_versions.c.id == flow_id)
            .order_by(flow_versions.c.version.desc())
        )
        with self._engine.connect() as c:
            rows = c.execute(query).mappings().all()
        if not rows:
            raise NotFoundError("flow", flow_id)
        return [
            FlowVersion(
                row["id"],
                row["version"],
                row["deployed"],
                row["created_ms"],
                parse_flow(row["definition"]),
            )
            for row in rows
        ]

    def latest(self, tenant: str, flow_id: str) -> FlowVersion:
        """The newest version."""
        return self.versions(tenant, flow_id)[0]

    def find(self, tenant: str) -> list[FlowVersion]:
        """The newest version of every flow, by id."""
        with self._engine.connect() as c:
            ids = c.execute(
                sa.select(flow_versions.c.id)
                .where(flow_versions.c.tenant == tenant)
                .distinct()
                .order_by(flow_versions.c.id)
            ).scalars()
            names = list(ids)
        return [self.latest(tenant, flow_id) for flow_id in names]

    def deploy(self, tenant: str, flow_id: str, version: int | None = None) -> FlowVersion:
        """Make ``version`` (default: the newest) the one whose rules run."""
        versions = self.versions(tenant, flow_id)
        chosen = next((v for v in versions if version in (None, v.version)), None)
        if chosen is None:
            raise NotFoundError("flow version", f"{flow_id}@{version}")
        rules = compile_flow(chosen.flow, self.resolver(tenant))
        keep = {rule.id for rule in rules}
        prefix = rule_id_for(flow_id, "")
        others = [r for _, r in self._rules.find(tenant) if not r.id.startswith(prefix)]
        cycle = emission_cycle([*others, *rules])
        if cycle:  # refused before anything changes
            raise ValueError(
                f"flow {flow_id!r} closes a loop of derived metrics: {' → '.join(cycle)}"
            )
        for _, old in self._rules.find(tenant):
            if old.id.startswith(prefix) and old.id not in keep:
                self._rules.delete(tenant, old.id)
        for rule in rules:
            self._rules.put(tenant, rule)
        with self._engine.begin() as c:
            where = (flow_versions.c.tenant == tenant, flow_versions.c.id == flow_id)
            c.execute(flow_versions.update().where(*where).values(deployed=False))
            c.execute(
                flow_versions.update()
                .where(*where, flow_versions.c.version == chosen.version)
                .values(deployed=True)
            )
        return msgspec.structs.replace(chosen, deployed=True)

    def revert(self, tenant: str, flow_id: str, version: int) -> FlowVersion:
        """Save ``version`` again as the newest and deploy it."""
        old = next((v for v in self.versions(tenant, flow_id) if v.version == version), None)
        if old is None:
            raise NotFoundError("flow version", f"{flow_id}@{version}")
        saved = self.save(tenant, old.flow)
        return self.deploy(tenant, flow_id, saved.version)

    def delete(self, tenant: str, flow_id: str) -> None:
        """Remove the flow, its versions and its rules."""
        self.versions(tenant, flow_id)
        prefix = rule_id_for(flow_id, "")
        for _, rule in self._rules.find(tenant):
            if rule.id.startswith(prefix):
                self._rules.delete(tenant, rule.id)
        with self._engine.begin() as c:
            c.execute(
                flow_versions.delete().where(
                    flow_versions.c.tenant == tenant, flow_versions.c.id == flow_id
                )
            )
