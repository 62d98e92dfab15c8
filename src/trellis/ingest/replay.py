"""Replay: quarantined messages decoded again, after a contract or mapping fix.

Each message is decoded with the device models in force now, exactly as ingest would
(the receive time stays the original one, so timestamps are judged as they were).
Recovered readings keep their lineage (source message id, sequence number) and are
written through the store's idempotent write, so replaying a message whose readings
are already stored adds nothing; the entry is marked replayed, never deleted. A
message that still fails stays in quarantine with the new reason and contract.
A recovered message joins the raw message archive, with the contract that accepted it,
so its readings' lineage resolves like a live message's; ``on_stored`` receives the
new readings of each message so that a running platform publishes them on the bus
(rules see replayed readings as they see live ones).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import msgspec

from trellis.core.config import IngestSettings
from trellis.core.types import Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.archive import Archive, ArchiveEntry, archive_entry
from trellis.ingest.decode import Limits, Rejection, decode_telemetry
from trellis.ingest.quarantine import Quarantine, QuarantinedMessage
from trellis.lineage.openlineage import Dataset, LineageEmitter, custom_facet
from trellis.store.base import TimeSeriesStore

__all__ = ["ReplayOutcome", "ReplayReport", "limits_of", "replay", "replay_lineage"]


def limits_of(settings: IngestSettings) -> Limits:
    """The bounds ingest checks messages against, from the settings (as the pipeline does)."""
    return Limits(
        max_payload_bytes=settings.max_payload_bytes,
        max_future_skew_ms=int(settings.max_future_skew_s * 1000),
        max_past_age_ms=int(settings.max_past_age_s * 1000),
    )


class ReplayOutcome(msgspec.Struct, frozen=True):
    """What became of one quarantined message."""

    id: int
    message_id: str
    recovered: bool
    readings: int
    stored: int
    reason: str | None = None
    contract: str | None = None


class ReplayReport(msgspec.Struct, frozen=True):
    """A replay's totals; ``duplicates`` are readings that were already stored."""

    replayed: int
    recovered: int
    still_quarantined: int
    readings: int
    stored: int
    duplicates: int
    outcomes: list[ReplayOutcome]


def replay(
    entries: Sequence[QuarantinedMessage],
    quarantine: Quarantine,
    registry: DeviceRegistry,
    store: TimeSeriesStore,
    limits: Limits,
    *,
    archive: Archive | None = None,
    on_stored: Callable[[list[Reading]], object] | None = None,
) -> ReplayReport:
    """Decode ``entries`` again and store what now passes; already-replayed ones are skipped.

    ``on_stored`` gets every recovered message's readings after they are durable
    (duplicates included: the bus carries them and rules ignore what they have seen).
    """
    outcomes: list[ReplayOutcome] = []
    archived: list[ArchiveEntry] = []
    recovered: list[int] = []
    failed: list[tuple[int, str, str | None]] = []
    readings_total = stored_total = 0
    for entry in entries:
        if entry.replayed_ms is not None:
            continue
        decoded = decode_telemetry(entry.message, registry.get, registry.models, limits)
        if isinstance(decoded, Rejection):
            failed.append((entry.id, decoded.reason, decoded.contract))
            outcomes.append(
                ReplayOutcome(
                    entry.id, entry.message.id, False, 0, 0, decoded.reason, decoded.contract
                )
            )
            continue
        stored = _write(store, decoded)
        if archive is not None:
            kept = archive_entry(entry.message, decoded, registry.get, registry.models)
            if kept is not None:
                archived.append(kept)
        if on_stored is not None:
            on_stored(decoded)
        recovered.append(entry.id)
        readings_total += len(decoded)
        stored_total += stored
        contract = registry.models[registry.require(decoded[0].tenant, decoded[0].device).model].key
        outcomes.append(
            ReplayOutcome(entry.id, entry.message.id, True, len(decoded), stored, contract=contract)
        )
    if archive is not None:
        archive.add(archived)
    quarantine.mark_replayed(recovered, failed)
    return ReplayReport(
        replayed=len(outcomes),
        recovered=len(recovered),
        still_quarantined=len(failed),
        readings=readings_total,
        stored=stored_total,
        duplicates=readings_total - stored_total,
        outcomes=outcomes,
    )


@contextlib.contextmanager
def replay_lineage(
    emitter: LineageEmitter, tenant: str, *, archived: bool
) -> Iterator[Callable[[ReplayReport], None]]:
    """One OpenLineage run (job ``quarantine.replay``) around one or more :func:`replay`
    calls; call what it yields with each report so COMPLETE carries the totals."""
    outputs = [Dataset("trellis.timeseries", f"{tenant}/readings")]
    if archived:
        outputs.append(Dataset("trellis.archive", f"{tenant}/messages"))
    totals = dict.fromkeys(("replayed", "recovered", "still_quarantined", "stored"), 0)

    def count(report: ReplayReport) -> None:
        for name in totals:
            totals[name] += getattr(report, name)

    with emitter.run(
        "quarantine.replay",
        inputs=[Dataset("trellis.quarantine", f"{tenant}/messages")],
        outputs=outputs,
    ) as run:
        yield count
        run.facets["trellis_replay"] = custom_facet("RunFacet", **totals)


def _write(store: TimeSeriesStore, readings: list[Reading]) -> int:
    result = store.write(readings)
    if result.rejected:
        refused = result.rejected[0]
        raise ValueError(f"the store refused {refused.reading!r}: {refused.reason}")
    return result.inserted
