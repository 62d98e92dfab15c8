"""``trellis db``: schema upgrades of both databases, retention, and the storage budget."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console, load_or_exit
from trellis.core.errors import TrellisError
from trellis.store.maintenance import StorageMaintenance

__all__ = ["app"]

app = typer.Typer(help="The databases: schema upgrades, retention, storage budget.")


@app.command()
def upgrade(config: ConfigOption = None) -> None:
    """Migrate the metadata schema to the newest revision and create the time-series schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from trellis.platform import open_storage
    from trellis.store.metadata import open_metadata

    settings = load_or_exit(config)
    try:
        engine = open_metadata(settings.metadata_url)
        engine.dispose()
        store = open_storage(settings)
        store.close()
    except (TrellisError, SQLAlchemyError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    from trellis.auth.audit import record_cli

    record_cli(settings, "cli.db.upgrade", tenant=None)
    kind = "PostgreSQL" if settings.timeseries_url.startswith("postgres") else "SQLite"
    console.print(f"metadata and time-series schemas are current ({kind})")


def _maintenance(config: ConfigOption) -> tuple[StorageMaintenance, Callable[[], None]]:
    """Storage housekeeping over the configured databases, and how to close them."""
    from trellis.devices.registry import DeviceRegistry
    from trellis.platform import open_storage
    from trellis.store.metadata import open_metadata

    settings = load_or_exit(config)
    engine = open_metadata(settings.metadata_url)
    store = open_storage(settings)
    registry = DeviceRegistry(engine)

    def close() -> None:
        store.close()
        engine.dispose()

    return StorageMaintenance(store, settings.storage, registry.every), close


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@app.command()
def usage(config: ConfigOption = None) -> None:
    """The storage budget: bytes per tenant, growth per day, days until the disk is full."""
    maintenance, close = _maintenance(config)
    try:
        budget = maintenance.budget()
    finally:
        close()
    table = Table("tenant", "readings", "bytes", "growth/day", title="storage budget")
    for tenant in budget.tenants:
        table.add_row(
            escape(tenant.tenant),
            f"{tenant.readings:,}",
            _size(tenant.bytes),
            _size(tenant.growth_bytes_per_day),
        )
    Console().print(table)
    free = (
        "unknown (set storage.capacity_bytes)"
        if budget.free_bytes is None
        else _size(budget.free_bytes)
    )
    days = "—" if budget.days_until_full is None else f"{budget.days_until_full:,.1f}"
    style = "[red]" if budget.alert else ""
    console.print(
        f"used {_size(budget.bytes)}, free {free}, growth {_size(budget.growth_bytes_per_day)}"
        f"/day, {style}days until full: {days}"
    )


@app.command()
def retention(config: ConfigOption = None) -> None:
    """Apply retention now: raw readings and rollups past each device's policy are deleted."""
    maintenance, close = _maintenance(config)
    try:
        run = maintenance.retain()
    finally:
        close()
    from trellis.auth.audit import record_cli

    record_cli(
        load_or_exit(config),
        "cli.db.retention",
        tenant=None,
        readings_deleted=run.readings_deleted,
        rollups_deleted=run.rollups_deleted,
    )
    console.print(
        f"deleted {run.readings_deleted:,} readings and {run.rollups_deleted:,} rollup minutes "
        f"({run.groups} policy groups)"
    )
