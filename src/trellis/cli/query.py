"""``trellis query``: read telemetry of many devices and metrics, as a table, CSV or Parquet."""

from __future__ import annotations

import csv
import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trellis.cli._common import ConfigOption, console, load_or_exit
from trellis.core.clock import now_ms, parse_timestamp, to_iso
from trellis.core.errors import TrellisError
from trellis.store.base import Aggregate, Fill
from trellis.store.query import Series, SeriesQuery, plan, run

__all__ = ["Format", "query"]

#: Rows a terminal table shows before it says how many more there are.
TABLE_ROWS = 200


class Format(enum.StrEnum):
    """Output formats."""

    TABLE = "table"
    CSV = "csv"
    PARQUET = "parquet"


def _instant(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        return parse_timestamp(int(value) if value.lstrip("-").isdigit() else value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def query(
    devices: Annotated[list[str], typer.Argument(help="device ids")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="repeat; default all reported")
    ] = None,
    start: Annotated[str | None, typer.Option(help="epoch ms or RFC 3339; default end-1h")] = None,
    end: Annotated[str | None, typer.Option(help="epoch ms or RFC 3339; default now")] = None,
    bucket_ms: Annotated[
        int | None, typer.Option("--bucket-ms", min=1000, help="aggregate into buckets")
    ] = None,
    fn: Annotated[Aggregate, typer.Option(help="bucket aggregate")] = Aggregate.AVG,
    fill: Annotated[Fill, typer.Option(help="empty buckets")] = Fill.NONE,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="raw values per series")] = 10_000,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.TABLE,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file (default stdout)")] = None,
    config: ConfigOption = None,
) -> None:
    """Read telemetry of devices (raw or bucketed) from the configured storage."""
    from trellis.platform import open_storage

    if output_format is Format.PARQUET and out is None:
        raise typer.BadParameter("Parquet needs --out FILE", param_hint="--out")
    settings = load_or_exit(config)
    end_ms = _instant(end, now_ms() + 1, "--end")
    start_ms = _instant(start, end_ms - 3_600_000, "--start")
    if start_ms >= end_ms:
        raise typer.BadParameter(f"start ({start_ms}) must be before end ({end_ms})")
    request = SeriesQuery(
        settings.tenant, devices, metric, start_ms, end_ms, bucket_ms, fn, fill, limit
    )
    try:
        store = open_storage(settings)
        try:
            pairs = plan(store, request)
            series = list(_with_progress(run(store, request, pairs), len(pairs)))
        finally:
            store.close()
    except (TrellisError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    if output_format is Format.TABLE:
        _table(series)
    elif output_format is Format.CSV:
        if out is None:
            _csv(series, sys.stdout)
        else:
            with out.open("w", newline="", encoding="utf-8") as sink:
                _csv(series, sink)
    else:
        assert out is not None
        _parquet(series, out)
    rows = sum(len(s.points) for s in series)
    if out is not None:
        console.print(f"wrote {rows} rows of {len(series)} series to {escape(str(out))}")


def _with_progress(series: Iterator[Series], total: int) -> Iterator[Series]:
    columns = (
        TextColumn("reading series"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=total < 2) as progress:
        task = progress.add_task("series", total=total)
        for one in series:
            yield one
            progress.advance(task)


def _table(series: list[Series]) -> None:
    table = Table("device", "metric", "time (UTC)", "value")
    shown = 0
    total = sum(len(s.points) for s in series)
    for one in series:
        for point in one.points:
            if shown == TABLE_ROWS:
                break
            table.add_row(
                escape(one.device), escape(one.metric), to_iso(point.ts), f"{point.value:g}"
            )
            shown += 1
    Console().print(table)  # the data goes to stdout; notes go to stderr
    if total > shown:
        console.print(f"{total - shown} more rows; use --format csv or parquet for all of them")


def _csv(series: list[Series], sink: TextIO) -> None:
    writer = csv.writer(sink)
    writer.writerow(["device", "metric", "ts", "time", "value"])
    for one in series:
        for point in one.points:
            writer.writerow([one.device, one.metric, point.ts, to_iso(point.ts), repr(point.value)])


def _parquet(series: list[Series], path: Path) -> None:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]  # ships no stubs
        import pyarrow.parquet as pq  # type: ignore[import-untyped]  # ships no stubs
    except ImportError:
        console.print(
            "[red]error:[/red] Parquet export needs pyarrow: pip install 'trellis-aiot[parquet]'"
        )
        raise typer.Exit(1) from None
    devices, metrics, stamps, values = [], [], [], []
    for one in series:
        for point in one.points:
            devices.append(one.device)
            metrics.append(one.metric)
            stamps.append(point.ts)
            values.append(point.value)
    table = pa.table(
        {
            "device": pa.array(devices, pa.string()),
            "metric": pa.array(metrics, pa.string()),
            "ts": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
            "value": pa.array(values, pa.float64()),
        }
    )
    pq.write_table(table, path)
