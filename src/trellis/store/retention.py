"""Retention and downsampling per tenant and device model, and the storage budget.

Pure decisions (which policy applies to a device, how many days until the disk is
full) are separate from the one function that deletes, so both are easy to test.
Raw readings and 1-minute rollups have separate horizons: raw for 30 days and
rollups for a year, say, so history stays queryable at minute resolution after the
raw readings are gone (:meth:`TimeSeriesStore.aggregate` reads the rollup for
whole-minute windows).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from trellis.core.config import RetentionRule, StorageSettings
from trellis.core.types import Device
from trellis.store.base import StorageUsage, TimeSeriesStore

__all__ = [
    "DAY_MS",
    "Policy",
    "RetentionRun",
    "StorageBudget",
    "TenantBudget",
    "apply_retention",
    "budget",
    "policy_for",
]

DAY_MS = 86_400_000


class Policy(msgspec.Struct, frozen=True):
    """How long raw readings and 1-minute rollups are kept, in days."""

    raw_days: float
    rollup_days: float


class RetentionRun(msgspec.Struct, frozen=True):
    """What one retention pass deleted."""

    readings_deleted: int
    rollups_deleted: int
    groups: int


def policy_for(storage: StorageSettings, tenant: str, model: str) -> Policy:
    """The most specific rule for (tenant, model): tenant+model, then tenant, then model,
    then the defaults (``storage.raw_days`` / ``storage.rollup_days``)."""

    def rank(rule: RetentionRule) -> int | None:
        if rule.tenant not in ("*", tenant) or rule.model not in ("*", model):
            return None
        return (rule.tenant != "*") * 2 + (rule.model != "*")

    best: tuple[int, RetentionRule] | None = None
    for rule in storage.retention:
        score = rank(rule)
        if score is not None and (best is None or score > best[0]):
            best = (score, rule)
    if best is None:
        return Policy(storage.raw_days, storage.rollup_days)
    return Policy(best[1].raw_days, best[1].rollup_days)


def apply_retention(
    store: TimeSeriesStore, storage: StorageSettings, devices: Iterable[Device], now: int
) -> RetentionRun:
    """Delete what every device's policy says is past keeping.

    First one pass over everything at the longest horizon of any policy (cheap: whole
    partitions on PostgreSQL, and it also ages out devices no longer registered),
    then one pass per (tenant, policy) group of devices with a shorter horizon.
    """
    groups: dict[tuple[str, Policy], list[str]] = {}
    for device in devices:
        groups.setdefault(
            (device.tenant, policy_for(storage, device.tenant, device.model)), []
        ).append(device.id)
    policies = [Policy(storage.raw_days, storage.rollup_days), *(p for _, p in groups)]
    longest = Policy(max(p.raw_days for p in policies), max(p.rollup_days for p in policies))
    readings = store.delete_before(now - int(longest.raw_days * DAY_MS))
    rollups = store.delete_rollups_before(now - int(longest.rollup_days * DAY_MS))
    for (tenant, policy), ids in sorted(groups.items(), key=lambda item: item[0][0]):
        if policy.raw_days < longest.raw_days:
            readings += store.delete_before(
                now - int(policy.raw_days * DAY_MS), tenant=tenant, devices=ids
            )
        if policy.rollup_days < longest.rollup_days:
            rollups += store.delete_rollups_before(
                now - int(policy.rollup_days * DAY_MS), tenant=tenant, devices=ids
            )
    return RetentionRun(readings, rollups, len(groups))


class TenantBudget(msgspec.Struct, frozen=True):
    """One tenant's share of the store: readings, estimated bytes, growth per day."""

    tenant: str
    readings: int
    bytes: int
    growth_bytes_per_day: int


class StorageBudget(msgspec.Struct, frozen=True):
    """Bytes used and free, growth per day, and days until the disk (or budget) is full.

    Per-tenant bytes are the store's bytes shared out by readings (a reading costs
    about the same whichever tenant sends it); growth is the last day's readings at
    that size. ``days_until_full`` is None when nothing grows or the free space is
    unknown (PostgreSQL without ``storage.capacity_bytes``).
    """

    bytes: int
    free_bytes: int | None
    growth_bytes_per_day: int
    days_until_full: float | None
    alert: bool
    tenants: list[TenantBudget]


def budget(
    usage: StorageUsage, *, capacity_bytes: int | None, alert_days_left: float
) -> StorageBudget:
    """The storage budget from one :meth:`TimeSeriesStore.usage` taken over the last day."""
    readings = sum(t.readings for t in usage.tenants)
    per_reading = usage.bytes / readings if readings else 0.0
    tenants = [
        TenantBudget(
            t.tenant,
            t.readings,
            round(t.readings * per_reading),
            round(t.readings_since * per_reading),
        )
        for t in usage.tenants
    ]
    growth = sum(t.growth_bytes_per_day for t in tenants)
    free: int | None = usage.free_bytes
    if capacity_bytes is not None:
        left = max(0, capacity_bytes - usage.bytes)
        free = left if free is None else min(free, left)
    days = None if free is None or growth <= 0 else free / growth
    return StorageBudget(
        bytes=usage.bytes,
        free_bytes=free,
        growth_bytes_per_day=growth,
        days_until_full=None if days is None else round(days, 1),
        alert=days is not None and days < alert_days_left,
        tenants=tenants,
    )
