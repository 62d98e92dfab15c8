"""``trellis experiment run FILE``: variant A against B on a simulated fleet, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trellis.cli._common import ConfigOption, console, load_or_exit
from trellis.sim.experiment import ExperimentError, load_experiment, run_experiment
from trellis.sim.report import render_report
from trellis.sim.reports import save_report

__all__ = ["app"]

app = typer.Typer(help="A/B experiments on simulated fleets.", no_args_is_help=True)


@app.command("run")
def run(
    file: Annotated[Path, typer.Argument(help="the experiment file (TOML)")],
    html: Annotated[
        Path | None, typer.Option(help="export the report page here (self-contained HTML)")
    ] = None,
    json: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
    config: ConfigOption = None,
) -> None:
    """Run variants A and B on the same scenario and seeds; print, store and export the
    report (the dashboard's Experiments page and /api/v1/experiments list stored ones)."""
    settings = load_or_exit(config)
    try:
        experiment = load_experiment(file)
    except ExperimentError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    with Progress(
        TextColumn("[bold]seeds"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("seeds", total=len(experiment.seeds))
        report = run_experiment(
            experiment, lambda done, _total: progress.update(task, completed=done)
        )
    table = Table(title=report.name)
    table.add_column("figure")
    table.add_column("A mean [95 % CI]")
    table.add_column("B mean [95 % CI]")
    table.add_column("B − A [95 % CI]")
    for c in report.comparisons:
        table.add_row(
            f"{c.figure} ({c.unit})" if c.unit else c.figure,
            *(
                f"{i.mean:.3g} [{i.low:.3g}, {i.high:.3g}]"
                for i in (c.a_mean, c.b_mean, c.difference)
            ),
        )
    console.print(table)
    for v in (report.a, report.b):
        console.print(
            f"{v.label}: {escape(v.name)} · lead time median {v.lead_median_h:.1f} h, "
            f"p10 {v.lead_p10_h:.1f} h · {v.alerts} alerts, {v.false_alerts} false"
        )
    report_id = save_report(settings.data_dir, report)
    console.print(f"stored as {report_id} (dashboard: /experiments/{report_id})")
    if json is not None:
        json.write_bytes(msgspec.json.format(msgspec.json.encode(report)))
        console.print(f"report → {json}")
    if html is not None:
        html.write_text(render_report(report), encoding="utf-8")
        console.print(f"report page → {html}")
