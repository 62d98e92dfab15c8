"""``trellis archive``: how much the raw message archive holds, and pruning it by age."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console

__all__ = ["app"]

app = typer.Typer(help="The raw message archive: size, and pruning by age.")


@app.command()
def stats(config: ConfigOption = None) -> None:
    """Messages, segments, bytes before and after compression, oldest message."""
    from trellis.cli._common import load_or_exit
    from trellis.core.clock import to_iso
    from trellis.ingest.archive import Archive
    from trellis.store.metadata import open_metadata

    settings = load_or_exit(config)
    engine = open_metadata(settings.metadata_url)
    try:
        kept = Archive(engine).stats()
    finally:
        engine.dispose()
    table = Table("messages", "segments", "payload bytes", "stored bytes", "ratio", "oldest")
    ratio = kept.raw_bytes / kept.stored_bytes if kept.stored_bytes else 0.0
    table.add_row(
        f"{kept.messages:,}",
        f"{kept.segments:,}",
        f"{kept.raw_bytes:,}",
        f"{kept.stored_bytes:,}",
        f"{ratio:.1f}×",
        to_iso(kept.oldest_received_ms) if kept.oldest_received_ms is not None else "—",
    )
    console.print(table)
    console.print(f"retention: {settings.fabric.archive_days:g} days")


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option(help="a duration ago (30d, 12h) or an instant; default the retention")
    ] = "",
    config: ConfigOption = None,
) -> None:
    """Delete archived messages received before the cutoff (whole segments)."""
    from trellis.cli._common import load_or_exit
    from trellis.core.clock import now_ms
    from trellis.ingest.archive import Archive
    from trellis.ingest.reprocess import parse_instant
    from trellis.store.metadata import open_metadata

    settings = load_or_exit(config)
    now = now_ms()
    try:
        cutoff = (
            parse_instant(older_than, now)
            if older_than
            else now - int(settings.fabric.archive_days * 86_400_000)
        )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    engine = open_metadata(settings.metadata_url)
    try:
        deleted = Archive(engine).delete_before(cutoff)
    finally:
        engine.dispose()
    console.print(f"deleted {deleted:,} archived messages")
