"""``trellis reprocess``: re-derive a past period's readings from the raw message archive."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from trellis.cli._common import ConfigOption, console
from trellis.core.clock import now_ms
from trellis.ingest.reprocess import parse_instant

__all__ = ["reprocess"]


def reprocess(
    model: Annotated[str, typer.Option("--model", "-m", help="device model name")],
    since: Annotated[str, typer.Option(help="epoch ms, RFC 3339 or a duration ago (7d, 2h)")],
    until: Annotated[str | None, typer.Option(help="same forms; default now")] = None,
    config: ConfigOption = None,
) -> None:
    """Decode the archived messages of MODEL's devices again with its current version;
    store the readings that are new (a second run stores nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from trellis.cli._common import load_or_exit
    from trellis.core.errors import NotFoundError
    from trellis.devices.registry import DeviceRegistry
    from trellis.ingest.archive import Archive
    from trellis.ingest.replay import limits_of
    from trellis.ingest.reprocess import reprocess_run
    from trellis.lineage.openlineage import LineageEmitter
    from trellis.platform import open_storage
    from trellis.store.metadata import open_metadata

    now = now_ms()
    try:
        start = parse_instant(since, now)
        end = now + 1 if until is None else parse_instant(until, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = load_or_exit(config)
    engine = open_metadata(settings.metadata_url)
    store = open_storage(settings)
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"reprocessing {escape(model)}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = reprocess_run(
                LineageEmitter.from_settings(settings.fabric),
                Archive(engine, level=settings.fabric.archive_level),
                DeviceRegistry(engine),
                store,
                limits_of(settings.ingest),
                tenant=settings.tenant,
                model=model,
                since=start,
                until=end,
                progress=advance,
            )
    except (NotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
        engine.dispose()
    console.print(
        f"{report.model}: {report.messages:,} messages of {report.devices} devices, "
        f"{report.readings:,} readings: {report.stored:,} new, {report.duplicates:,} already "
        f"stored ({report.changed:,} with a different value, kept), {report.refused:,} "
        "refused by the current contract"
    )
    for reason in report.reasons:
        console.print(f"  refused {escape(reason)}", soft_wrap=True)
