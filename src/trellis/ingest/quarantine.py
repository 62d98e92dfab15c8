"""Quarantine: messages that could not become readings, kept whole with the reason.

Nothing is dropped: the original bytes, topic and properties are stored so that a
message can be inspected, and replayed once the contract or mapping is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError, StoreError
from trellis.core.types import RawMessage
from trellis.store.metadata import quarantine

__all__ = ["Quarantine", "QuarantinedMessage"]


class QuarantinedMessage(msgspec.Struct, frozen=True):
    """A refused message and why it was refused."""

    id: int
    tenant: str | None
    message: RawMessage
    reason: str
    quarantined_ms: int
    contract: str | None = None
    replayed_ms: int | None = None


class Quarantine:
    """The quarantine table of the metadata database."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> sa.Engine:
        """The metadata database the quarantine lives in (the archive shares it)."""
        return self._engine

    def add(
        self,
        entries: Sequence[tuple[RawMessage, str, str | None, str | None]],
    ) -> None:
        """Store ``(message, reason, tenant, contract)`` entries in one transaction."""
        if not entries:
            return
        at = now_ms()
        rows = [
            {
                "tenant": tenant,
                "message_id": raw.id,
                "source": raw.source,
                "topic": raw.topic,
                "payload": raw.payload,
                "properties": raw.properties,
                "received_ms": raw.received_ms,
                "reason": reason,
                "quarantined_ms": at,
                "contract": contract,
            }
            for raw, reason, tenant, contract in entries
        ]
        try:
            with self._engine.begin() as connection:
                connection.execute(quarantine.insert(), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"quarantining {len(rows)} messages failed: {exc}") from exc

    def find(
        self,
        tenant: str | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        pending: bool = False,
    ) -> list[QuarantinedMessage]:
        """Newest first; ``tenant=None`` includes messages whose tenant was unreadable;
        ``pending`` leaves out the entries a replay has already recovered."""
        query = sa.select(quarantine).order_by(quarantine.c.id.desc()).limit(limit).offset(offset)
        if tenant is not None:
            query = query.where(quarantine.c.tenant == tenant)
        if pending:
            query = query.where(quarantine.c.replayed_ms.is_(None))
        with self._engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query).mappings()]

    def get(self, entry_id: int, tenant: str | None) -> QuarantinedMessage:
        """One entry of ``tenant``, or :class:`NotFoundError` (also for another tenant's).

        ``tenant=None`` (the operator on the host) reads any entry; the API always passes
        the caller's tenant, so an id of another tenant is as unknown as a missing one."""
        query = sa.select(quarantine).where(quarantine.c.id == entry_id)
        if tenant is not None:
            query = query.where(quarantine.c.tenant == tenant)
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            raise NotFoundError("quarantined message", entry_id)
        return _entry(row)

    def mark_replayed(
        self, recovered: Sequence[int], failed: Sequence[tuple[int, str, str | None]]
    ) -> None:
        """Record a replay: ``recovered`` entries are done, ``failed`` ones get the new
        reason and contract version (they stay in quarantine)."""
        at = now_ms()
        try:
            with self._engine.begin() as connection:
                if recovered:
                    connection.execute(
                        quarantine.update()
                        .where(quarantine.c.id.in_(list(recovered)))
                        .values(replayed_ms=at)
                    )
                for entry_id, reason, contract in failed:
                    connection.execute(
                        quarantine.update()
                        .where(quarantine.c.id == entry_id)
                        .values(reason=reason, contract=contract)
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"recording a replay failed: {exc}") from exc

    def count(self, tenant: str | None = None, *, pending: bool = False) -> int:
        """How many messages are in quarantine (``pending``: not yet recovered)."""
        query = sa.select(sa.func.count()).select_from(quarantine)
        if tenant is not None:
            query = query.where(quarantine.c.tenant == tenant)
        if pending:
            query = query.where(quarantine.c.replayed_ms.is_(None))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


def _entry(row: sa.RowMapping) -> QuarantinedMessage:
    return QuarantinedMessage(
        id=row["id"],
        tenant=row["tenant"],
        message=RawMessage(
            id=row["message_id"],
            source=row["source"],
            topic=row["topic"],
            payload=row["payload"],
            received_ms=row["received_ms"],
            properties=row["properties"],
        ),
        reason=row["reason"],
        quarantined_ms=row["quarantined_ms"],
        contract=row["contract"],
        replayed_ms=row["replayed_ms"],
    )
