"""Reprocess: re-derive a past period's readings from the raw message archive.

Schema-on-read: when a device model gains a mapping field or a metric, the archived
messages of its devices are decoded again with the model version in force now, and
what they yield is written through the store's idempotent write. Readings already
stored keep their key and are counted as duplicates, so a second run stores nothing.
The store keeps the first value of a key; a value the new version derives
differently is counted as ``changed`` (not overwritten) so that nobody mistakes a
reprocess for a correction of stored history. Each message's index row records the
contract that re-derived it (its lineage now names that version).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import msgspec

from trellis.core.clock import now_ms, parse_timestamp
from trellis.core.errors import NotFoundError
from trellis.core.types import Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.archive import Archive, ArchivedMessage
from trellis.ingest.decode import Limits, Rejection, decode_telemetry
from trellis.lineage.openlineage import Dataset, LineageEmitter, custom_facet
from trellis.store.base import TimeSeriesStore

__all__ = ["ReprocessReport", "parse_instant", "reprocess", "reprocess_run"]

_PAGE = 2_000
_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_instant(value: str, now: int) -> int:
    """Epoch ms, RFC 3339 text, or a duration ago (``90m``, ``2h``, ``7d``)."""
    ago = _AGO.match(value.strip())
    if ago is not None:
        return now - int(float(ago.group(1)) * _UNIT_MS[ago.group(2)])
    return parse_timestamp(int(value) if value.lstrip("-").isdigit() else value)


class ReprocessReport(msgspec.Struct, frozen=True):
    """What a reprocess did; ``refused`` messages fail the current contract (first reasons)."""

    model: str
    devices: int
    messages: int
    readings: int
    stored: int
    duplicates: int
    changed: int
    refused: int
    reasons: list[str]


def reprocess(
    archive: Archive,
    registry: DeviceRegistry,
    store: TimeSeriesStore,
    limits: Limits,
    *,
    tenant: str,
    model: str,
    since: int,
    until: int,
    progress: Callable[[int, int], object] | None = None,
    on_stored: Callable[[list[Reading]], object] | None = None,
) -> ReprocessReport:
    """Decode again the archived messages of ``model``'s devices with readings in
    ``[since, until)`` and store what is new.

    ``progress(done, total)`` is called after each page of messages; ``on_stored`` gets
    the readings of each page once they are durable. Raises :class:`NotFoundError`
    for an unknown model and ``ValueError`` for an empty period.
    """
    if until <= since:
        raise ValueError(f"the period is empty: since {since} is not before until {until}")
    current = registry.models.get(model)
    if current is None:
        raise NotFoundError("device model", model)
    devices = [d.id for d in registry.find(tenant) if d.model == model]
    total = sum(archive.count(tenant, d, since, until) for d in devices)
    done = readings_total = stored = duplicates = changed = refused = 0
    reasons: list[str] = []
    for page in _pages(archive, tenant, devices, since, until):
        derived: list[Reading] = []
        ids: list[str] = []
        for _entry, raw in archive.messages(page):
            decoded = decode_telemetry(raw, registry.get, registry.models, limits)
            if isinstance(decoded, Rejection):
                refused += 1
                if len(reasons) < 10:
                    reasons.append(f"{raw.id}: {decoded.reason}")
                continue
            ids.append(raw.id)
            derived.extend(r for r in decoded if since <= r.ts < until)
        result = store.write(derived)
        if result.rejected:
            bad = result.rejected[0]
            raise ValueError(f"the store refused {bad.reading!r}: {bad.reason}")
        readings_total += len(derived)
        stored += result.inserted
        if result.inserted < len(derived):
            duplicates += len(derived) - result.inserted
            changed += _changed(store, derived)
        archive.mark_reprocessed(ids, current.key, now_ms())
        if on_stored is not None and derived:
            on_stored(derived)
        done += len(page)
        if progress is not None:
            progress(done, total)
    return ReprocessReport(
        model=current.key,
        devices=len(devices),
        messages=done,
        readings=readings_total,
        stored=stored,
        duplicates=duplicates,
        changed=changed,
        refused=refused,
        reasons=reasons,
    )


def reprocess_run(
    emitter: LineageEmitter,
    archive: Archive,
    registry: DeviceRegistry,
    store: TimeSeriesStore,
    limits: Limits,
    *,
    tenant: str,
    model: str,
    since: int,
    until: int,
    progress: Callable[[int, int], object] | None = None,
) -> ReprocessReport:
    """:func:`reprocess` as an OpenLineage run (job ``reprocess.{model}``): START, then
    COMPLETE with the counts, or FAIL with the error."""
    window = {"trellis_window": custom_facet("DatasetFacet", since=since, until=until)}
    with emitter.run(
        f"reprocess.{model}",
        inputs=[Dataset("trellis.archive", f"{tenant}/messages", window)],
        outputs=[Dataset("trellis.timeseries", f"{tenant}/readings")],
    ) as run:
        report = reprocess(
            archive,
            registry,
            store,
            limits,
            tenant=tenant,
            model=model,
            since=since,
            until=until,
            progress=progress,
        )
        run.facets["trellis_reprocess"] = custom_facet("RunFacet", **msgspec.to_builtins(report))
    return report


def _pages(
    archive: Archive, tenant: str, devices: list[str], since: int, until: int
) -> Iterator[list[ArchivedMessage]]:
    for device in devices:
        offset = 0
        while True:
            page = archive.find(tenant, device, since, until, limit=_PAGE, offset=offset)
            if not page:
                break
            # Decompress each segment once: consecutive entries of one segment together.
            yield sorted(page, key=lambda e: (e.segment_id, e.position))
            offset += len(page)


def _changed(store: TimeSeriesStore, derived: list[Reading]) -> int:
    """How many re-derived readings differ from the value the store holds for their key."""
    by_series: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in derived:
        by_series.setdefault((r.tenant, r.device, r.metric), {})[r.ts] = r.value
    differing = 0
    for (tenant, device, metric), values in by_series.items():
        start, end = min(values), max(values) + 1
        for point in store.query(tenant, device, metric, start, end, limit=100_000):
            new = values.get(point.ts)
            if new is not None and new != point.value:
                differing += 1
    return differing
