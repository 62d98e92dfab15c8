"""``trellis quarantine``: messages refused by ingest, inspected and replayed after a fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console
from trellis.core.clock import to_iso
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.quarantine import Quarantine
from trellis.store.base import TimeSeriesStore

__all__ = ["app"]

app = typer.Typer(help="Quarantined messages: list, show, replay after a contract fix.")


def _open(
    config: ConfigOption,
) -> tuple[Quarantine, DeviceRegistry, TimeSeriesStore, str, Callable[[], None]]:
    from trellis.cli._common import load_or_exit
    from trellis.platform import open_storage
    from trellis.store.metadata import open_metadata

    settings = load_or_exit(config)
    engine = open_metadata(settings.metadata_url)
    store = open_storage(settings)

    def close() -> None:
        store.close()
        engine.dispose()

    return Quarantine(engine), DeviceRegistry(engine), store, settings.tenant, close


@app.command("list")
def list_entries(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
    all_: Annotated[bool, typer.Option("--all", help="include replayed entries")] = False,
) -> None:
    """Quarantined messages, newest first: id, device topic, contract, reason."""
    quarantine, _, _, tenant, close = _open(config)
    try:
        entries = quarantine.find(tenant, limit, pending=not all_)
        pending = quarantine.count(tenant, pending=True)
    finally:
        close()
    table = Table("id", "received", "topic", "contract", "reason", "replayed", title="quarantine")
    for entry in entries:
        table.add_row(
            str(entry.id),
            to_iso(entry.message.received_ms),
            escape(entry.message.topic),
            escape(entry.contract or "—"),
            escape(entry.reason),
            "yes" if entry.replayed_ms else "",
        )
    console.print(table)
    console.print(f"{pending:,} pending")


@app.command()
def show(entry_id: int, config: ConfigOption = None) -> None:
    """One entry: reason, contract, properties and the original payload."""
    from trellis.core.errors import NotFoundError

    quarantine, _, _, _, close = _open(config)
    try:
        entry = quarantine.get(entry_id, None)
    except NotFoundError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    finally:
        close()
    console.print(
        f"id {entry.id}, message {escape(entry.message.id)}, topic {escape(entry.message.topic)}"
    )
    console.print(f"contract: {escape(entry.contract or 'unknown')}")
    console.print(f"reason: {escape(entry.reason)}", soft_wrap=True)
    console.print(f"properties: {escape(str(entry.message.properties))}")
    typer.echo(entry.message.payload.decode("utf-8", errors="backslashreplace"))


@app.command()
def replay(
    ids: Annotated[
        list[int] | None, typer.Argument(help="entry ids (default: every pending one)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Decode pending entries again with today's models; store what passes, once."""
    from rich.progress import Progress

    from trellis.cli._common import load_or_exit
    from trellis.ingest.archive import Archive
    from trellis.ingest.replay import limits_of, replay_lineage
    from trellis.ingest.replay import replay as run_replay
    from trellis.lineage.openlineage import LineageEmitter

    settings = load_or_exit(config)
    quarantine, registry, store, tenant, close = _open(config)
    archive = Archive(quarantine.engine, level=settings.fabric.archive_level)
    emitter = LineageEmitter.from_settings(settings.fabric)
    try:
        entries = (
            [quarantine.get(i, None) for i in ids]
            if ids
            else quarantine.find(tenant, limit=1_000_000, pending=True)
        )
        limits = limits_of(settings.ingest)
        recovered = stored = duplicates = failed = 0
        with (
            replay_lineage(emitter, tenant, archived=True) as count,
            Progress(console=console, transient=True) as progress,
        ):
            task = progress.add_task("replaying", total=len(entries))
            for start in range(0, len(entries), 500):
                chunk = entries[start : start + 500]
                report = run_replay(chunk, quarantine, registry, store, limits, archive=archive)
                count(report)
                recovered += report.recovered
                stored += report.stored
                duplicates += report.duplicates
                failed += report.still_quarantined
                progress.advance(task, len(chunk))
    finally:
        close()
    from trellis.auth.audit import record_cli

    record_cli(
        settings,
        "cli.quarantine.replay",
        tenant=tenant,
        entries=len(entries),
        recovered=recovered,
        stored=stored,
    )
    console.print(
        f"recovered {recovered:,} messages ({stored:,} readings stored, {duplicates:,} already "
        f"stored); {failed:,} still quarantined"
    )
    if failed:
        raise typer.Exit(1)
