"""The model registry on the metadata database: models, versions, stages, routing.

Stages go ``dev → staging → production → archived``. One version per model is in
production (the champion); promoting another archives it, and the stage history
(``ml_stage_events``) is what :meth:`ModelRegistry.rollback` reads. A promotion holds
a lock on the model row (``promoting_ms``) taken with a conditional ``UPDATE``, so a
second promotion, from this process or another, is refused rather than interleaved.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import ConflictError, NotFoundError
from trellis.ml.routing import RoutingPolicy
from trellis.ml.signature import Signature, semver
from trellis.store.metadata import ml_models, ml_stage_events, ml_versions, row_dict

__all__ = ["ModelRegistry", "ModelSummary", "ModelVersion", "Stage", "StageEvent"]


class Stage(enum.StrEnum):
    """Where a version is in its life."""

    DEV = "dev"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class ModelVersion(msgspec.Struct, frozen=True):
    """One registered version: its artifact, contract, evidence and provenance."""

    name: str
    version: str
    stage: Stage
    sha256: str
    signature: Signature
    metrics: dict[str, float]
    card: dict[str, str]
    lineage: dict[str, Any]
    registered_by: str
    registered_ms: int
    stage_ms: int
    reviews: list[dict[str, Any]] = []


class ModelSummary(msgspec.Struct, frozen=True):
    """A model with its champion, versions and routing policy."""

    name: str
    description: str
    production: str | None
    versions: list[str]
    routing: RoutingPolicy
    promoting: bool


class StageEvent(msgspec.Struct, frozen=True):
    """One stage change."""

    version: str
    from_stage: str | None
    to_stage: str
    actor: str
    at_ms: int
    detail: dict[str, Any]


def _version(row: sa.RowMapping) -> ModelVersion:
    data = row_dict(row)
    data.pop("tenant")
    data.pop("reference")
    return msgspec.convert(data, ModelVersion)


class ModelRegistry:
    """Models and versions of every tenant; synchronous, called from a thread."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], int] = now_ms) -> None:
        self._engine = engine
        self._clock = clock

    # -- writing ---------------------------------------------------------------------

    def register(
        self,
        tenant: str,
        name: str,
        version: str,
        *,
        sha256: str,
        signature: Signature,
        registered_by: str,
        metrics: dict[str, float] | None = None,
        card: dict[str, str] | None = None,
        lineage: dict[str, Any] | None = None,
        reference: dict[str, list[float]] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Add a version in stage ``dev``; an existing version number is a conflict."""
        semver(version)
        now = self._clock()
        with self._engine.begin() as c:
            exists = c.execute(
                sa.select(ml_models.c.name).where(
                    ml_models.c.tenant == tenant, ml_models.c.name == name
                )
            ).first()
            if exists is None:
                c.execute(
                    ml_models.insert().values(
                        tenant=tenant,
                        name=name,
                        description=description,
                        routing=msgspec.to_builtins(RoutingPolicy()),
                        created_ms=now,
                    )
                )
            try:
                c.execute(
                    ml_versions.insert().values(
                        tenant=tenant,
                        name=name,
                        version=version,
                        stage=Stage.DEV.value,
                        sha256=sha256,
                        signature=msgspec.to_builtins(signature),
                        metrics=metrics or {},
                        card=card or {},
                        lineage=lineage or {},
                        reference=reference or {},
                        reviews=[],
                        registered_by=registered_by,
                        registered_ms=now,
                        stage_ms=now,
                    )
                )
            except sa.exc.IntegrityError:
                raise ConflictError(
                    f"model {name} version {version} is already registered; versions are "
                    "immutable, register a new version number"
                ) from None
            _stage_event(c, tenant, name, version, None, Stage.DEV, registered_by, now, {})
        return self.get(tenant, name, version)

    def set_stage(
        self,
        tenant: str,
        name: str,
        version: str,
        stage: Stage,
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Move a version to ``stage``; entering production archives the old champion."""
        now = self._clock()
        with self._engine.begin() as c:
            current = self._get(c, tenant, name, version)
            if stage is Stage.PRODUCTION:
                for old in c.execute(
                    sa.select(ml_versions.c.version).where(
                        ml_versions.c.tenant == tenant,
                        ml_versions.c.name == name,
                        ml_versions.c.stage == Stage.PRODUCTION.value,
                        ml_versions.c.version != version,
                    )
                ).scalars():
                    self._move(c, tenant, name, old, Stage.PRODUCTION, Stage.ARCHIVED, actor, now)
            self._move(c, tenant, name, version, current.stage, stage, actor, now, detail)
        return self.get(tenant, name, version)

    def _move(
        self,
        c: sa.Connection,
        tenant: str,
        name: str,
        version: str,
        before: Stage,
        after: Stage,
        actor: str,
        now: int,
        detail: dict[str, Any] | None = None,
    ) -> None:
        c.execute(
            ml_versions.update()
            .where(
                ml_versions.c.tenant == tenant,
                ml_versions.c.name == name,
                ml_versions.c.version == version,
            )
            .values(stage=after.value, stage_ms=now)
        )
        _stage_event(c, tenant, name, version, before, after, actor, now, detail or {})

    def rollback(self, tenant: str, name: str, actor: str) -> ModelVersion:
        """Put the previous champion back in production (the current one is archived)."""
        champion = self.production(tenant, name)
        if champion is None:
            raise ConflictError(f"model {name} has no version in production to roll back from")
        previous = next(
            (
                event.version
                for event in reversed(self.history(tenant, name))
                if event.to_stage == Stage.PRODUCTION.value and event.version != champion.version
            ),
            None,
        )
        if previous is None:
            raise ConflictError(
                f"model {name} has had no other version in production; nothing to roll back to"
            )
        return self.set_stage(
            tenant, name, previous, Stage.PRODUCTION, actor, {"rollback_from": champion.version}
        )

    def set_routing(self, tenant: str, name: str, policy: RoutingPolicy) -> RoutingPolicy:
        """Replace the routing policy; a challenger must be a registered version."""
        if policy.challenger is not None:
            self.get(tenant, name, policy.challenger)
        with self._engine.begin() as c:
            done = c.execute(
                ml_models.update()
                .where(ml_models.c.tenant == tenant, ml_models.c.name == name)
                .values(routing=msgspec.to_builtins(policy))
            ).rowcount
        if not done:
            raise NotFoundError("model", name)
        return policy

    def record_review(
        self, tenant: str, name: str, version: str, reviewer: str, decision: str, note: str = ""
    ) -> ModelVersion:
        """Record a governance review of a version (the hook the validation gate reads)."""
        model_version = self.get(tenant, name, version)
        reviews = [
            *model_version.reviews,
            {"reviewer": reviewer, "decision": decision, "note": note, "at_ms": self._clock()},
        ]
        with self._engine.begin() as c:
            c.execute(
                ml_versions.update()
                .where(
                    ml_versions.c.tenant == tenant,
                    ml_versions.c.name == name,
                    ml_versions.c.version == version,
                )
                .values(reviews=reviews)
            )
        return self.get(tenant, name, version)

    @contextmanager
    def promotion_lock(
        self, tenant: str, name: str, stale_after_ms: int = 15 * 60_000
    ) -> Iterator[None]:
        """Hold the model's promotion lock; a second holder gets :class:`ConflictError`.

        A lock older than ``stale_after_ms`` is taken over: it was left by a process
        that died mid-promotion (a gate run takes seconds, not minutes).
        """
        self.model(tenant, name)
        now = self._clock()
        with self._engine.begin() as c:
            taken = c.execute(
                ml_models.update()
                .where(
                    ml_models.c.tenant == tenant,
                    ml_models.c.name == name,
                    sa.or_(
                        ml_models.c.promoting_ms.is_(None),
                        ml_models.c.promoting_ms < now - stale_after_ms,
                    ),
                )
                .values(promoting_ms=now)
            ).rowcount
        if not taken:
            raise ConflictError(
                f"a promotion of model {name} is already running; wait for it to finish"
            )
        try:
            yield
        finally:
            with self._engine.begin() as c:
                c.execute(
                    ml_models.update()
                    .where(ml_models.c.tenant == tenant, ml_models.c.name == name)
                    .values(promoting_ms=None)
                )

    # -- reading ---------------------------------------------------------------------

    def _get(self, c: sa.Connection, tenant: str, name: str, version: str) -> ModelVersion:
        row = (
            c.execute(
                sa.select(ml_versions).where(
                    ml_versions.c.tenant == tenant,
                    ml_versions.c.name == name,
                    ml_versions.c.version == version,
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError("model version", f"{name} {version}")
        return _version(row)

    def get(self, tenant: str, name: str, version: str) -> ModelVersion:
        """One version; :class:`NotFoundError` when it does not exist."""
        with self._engine.connect() as c:
            return self._get(c, tenant, name, version)

    def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first by semantic version."""
        with self._engine.connect() as c:
            rows = c.execute(
                sa.select(ml_versions).where(
                    ml_versions.c.tenant == tenant, ml_versions.c.name == name
                )
            ).mappings()
            found = [_version(row) for row in rows]
        return sorted(found, key=lambda v: semver(v.version))

    def production(self, tenant: str, name: str) -> ModelVersion | None:
        """The champion, if a version is in production."""
        return next((v for v in self.versions(tenant, name) if v.stage is Stage.PRODUCTION), None)

    def reference(self, tenant: str, name: str, version: str) -> dict[str, list[float]]:
        """The training reference sample per feature (for drift)."""
        with self._engine.connect() as c:
            value = c.execute(
                sa.select(ml_versions.c.reference).where(
                    ml_versions.c.tenant == tenant,
                    ml_versions.c.name == name,
                    ml_versions.c.version == version,
                )
            ).scalar_one_or_none()
        if value is None:
            raise NotFoundError("model version", f"{name} {version}")
        return dict(value)

    def model(self, tenant: str, name: str) -> ModelSummary:
        """A model's summary; :class:`NotFoundError` when it does not exist."""
        with self._engine.connect() as c:
            row = (
                c.execute(
                    sa.select(ml_models).where(
                        ml_models.c.tenant == tenant, ml_models.c.name == name
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError("model", name)
        versions = self.versions(tenant, name)
        return ModelSummary(
            name=name,
            description=row["description"],
            production=next((v.version for v in versions if v.stage is Stage.PRODUCTION), None),
            versions=[v.version for v in versions],
            routing=msgspec.convert(row["routing"], RoutingPolicy),
            promoting=row["promoting_ms"] is not None,
        )

    def models(self, tenant: str) -> list[ModelSummary]:
        """Every model of the tenant, by name."""
        with self._engine.connect() as c:
            names = c.execute(
                sa.select(ml_models.c.name)
                .where(ml_models.c.tenant == tenant)
                .order_by(ml_models.c.name)
            ).scalars()
            found = list(names)
        return [self.model(tenant, name) for name in found]

    def history(self, tenant: str, name: str) -> list[StageEvent]:
        """The model's stage changes, oldest first."""
        with self._engine.connect() as c:
            rows = c.execute(
                sa.select(ml_stage_events)
                .where(ml_stage_events.c.tenant == tenant, ml_stage_events.c.name == name)
                .order_by(ml_stage_events.c.id)
            ).mappings()
            return [
                StageEvent(
                    version=r["version"],
                    from_stage=r["from_stage"],
                    to_stage=r["to_stage"],
                    actor=r["actor"],
                    at_ms=r["at_ms"],
                    detail=dict(r["detail"]),
                )
                for r in rows
            ]


def _stage_event(
    c: sa.Connection,
    tenant: str,
    name: str,
    version: str,
    before: Stage | None,
    after: Stage,
    actor: str,
    at_ms: int,
    detail: dict[str, Any],
) -> None:
    c.execute(
        ml_stage_events.insert().values(
            tenant=tenant,
            name=name,
            version=version,
            from_stage=None if before is None else before.value,
            to_stage=after.value,
            actor=actor,
            at_ms=at_ms,
            detail=detail,
        )
    )
