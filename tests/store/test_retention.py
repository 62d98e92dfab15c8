"""Retention per tenant and device model, and the storage budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.core.config import RetentionRule, StorageSettings
from trellis.core.types import Device, Reading
from trellis.store import MemoryTimeSeriesStore, SQLiteTimeSeriesStore, StorageUsage, TenantUsage
from trellis.store.retention import DAY_MS, Policy, apply_retention, budget, policy_for

NOW = 1_764_000_000_000
RULES = StorageSettings(
    raw_days=30,
    rollup_days=365,
    retention=[
        RetentionRule(model="pump", raw_days=7, rollup_days=90),
        RetentionRule(tenant="acme", raw_days=60, rollup_days=400),
        RetentionRule(tenant="acme", model="pump", raw_days=2, rollup_days=30),
    ],
)


@pytest.mark.parametrize(
    ("tenant", "model", "expected"),
    [
        ("globex", "room", Policy(30, 365)),  # defaults
        ("globex", "pump", Policy(7, 90)),  # model rule
        ("acme", "room", Policy(60, 400)),  # tenant rule
        ("acme", "pump", Policy(2, 30)),  # tenant + model beats both
    ],
)
def test_most_specific_rule_wins(tenant: str, model: str, expected: Policy) -> None:
    """tenant+model, then tenant, then model, then the defaults."""
    assert policy_for(RULES, tenant, model) == expected


def test_retention_keeps_each_device_for_its_own_policy() -> None:
    """Each device loses exactly the readings and rollups older than its policy allows."""
    store = MemoryTimeSeriesStore()
    devices = [
        Device("acme", "p1", "pump"),
        Device("acme", "r1", "room"),
        Device("globex", "p1", "pump"),
        Device("globex", "r1", "room"),
    ]
    ages = [1, 3, 10, 40, 100, 380, 500]  # days old
    for device in [*devices, Device("globex", "gone", "room")]:  # "gone" is unregistered
        store.write([Reading(device.tenant, device.id, "m", NOW - a * DAY_MS, 1.0) for a in ages])
    run = apply_retention(store, RULES, devices, NOW)

    def kept(tenant: str, device: str) -> int:
        return len(store.query(tenant, device, "m", 0, NOW + 1))

    def minutes(tenant: str, device: str) -> int:
        # whole days over whole minutes: answered from the 1-minute rollup
        return len(store.aggregate(tenant, device, "m", NOW - 600 * DAY_MS, NOW + DAY_MS, DAY_MS))

    assert kept("acme", "p1") == 1  # raw 2 days
    assert kept("acme", "r1") == 4  # raw 60 days
    assert kept("globex", "p1") == 2  # raw 7 days
    assert kept("globex", "r1") == 3  # raw 30 days
    assert kept("globex", "gone") == 4  # unregistered: aged out at the longest horizon only
    assert minutes("acme", "p1") == 3  # rollups 30 days
    assert minutes("acme", "r1") == 6  # rollups 400 days
    assert minutes("globex", "p1") == 4  # rollups 90 days
    assert run.readings_deleted == 6 + 3 + 5 + 4 + 3
    assert run.groups == 4


def test_budget_shares_bytes_by_readings_and_predicts_full() -> None:
    """Bytes per tenant, growth per day and days until full follow from one usage sample."""
    usage = StorageUsage(
        bytes=1_000_000,
        free_bytes=9_000_000,
        tenants=[TenantUsage("acme", 7_500, 750), TenantUsage("globex", 2_500, 250)],
    )
    got = budget(usage, capacity_bytes=None, alert_days_left=14)
    assert [(t.tenant, t.bytes, t.growth_bytes_per_day) for t in got.tenants] == [
        ("acme", 750_000, 75_000),
        ("globex", 250_000, 25_000),
    ]
    assert got.growth_bytes_per_day == 100_000
    assert got.days_until_full == 90.0
    assert got.alert is False
    tight = budget(usage, capacity_bytes=2_000_000, alert_days_left=14)
    assert tight.free_bytes == 1_000_000
    assert tight.days_until_full == 10.0
    assert tight.alert is True


def test_budget_without_growth_or_free_space_predicts_nothing() -> None:
    """No growth, or free space unknown, means no prediction and no alert."""
    idle = StorageUsage(1_000, 5_000, [TenantUsage("acme", 10, 0)])
    assert budget(idle, capacity_bytes=None, alert_days_left=14).days_until_full is None
    blind = StorageUsage(1_000, None, [TenantUsage("acme", 10, 10)])
    got = budget(blind, capacity_bytes=None, alert_days_left=14)
    assert (got.days_until_full, got.alert) == (None, False)
    empty = budget(StorageUsage(0, 100, []), capacity_bytes=None, alert_days_left=14)
    assert (empty.growth_bytes_per_day, empty.tenants) == (0, [])


def test_sqlite_usage_counts_files_and_tenants(tmp_path: Path) -> None:
    """SQLite usage is the file, WAL and shm bytes, free disk, and readings per tenant."""
    store = SQLiteTimeSeriesStore(tmp_path / "ts.db")
    try:
        store.write([Reading("acme", "d", "m", NOW - a * DAY_MS, 1.0) for a in (0, 2, 3)])
        store.write([Reading("globex", "d", "m", NOW, 1.0)])
        usage = store.usage(NOW - DAY_MS)
        assert usage.bytes >= (tmp_path / "ts.db").stat().st_size > 0
        assert usage.free_bytes is not None
        assert usage.free_bytes > 0
        assert usage.tenants == [TenantUsage("acme", 3, 1), TenantUsage("globex", 1, 1)]
    finally:
        store.close()


def test_maintenance_reuses_a_recent_budget_only_within_max_age() -> None:
    """budget(max_age_s) returns the last figure while young enough, else measures again."""
    from trellis.store.maintenance import StorageMaintenance

    store = MemoryTimeSeriesStore()
    clock = [NOW]
    maintenance = StorageMaintenance(store, StorageSettings(), list, clock=lambda: clock[0])
    first = maintenance.budget()
    store.write([Reading("acme", "d", "m", NOW - 1_000, 1.0)])
    clock[0] += 30_000
    assert maintenance.budget(max_age_s=60) is first
    fresh = maintenance.budget(max_age_s=10)
    assert [t.tenant for t in fresh.tenants] == ["acme"]
