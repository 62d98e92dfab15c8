"""``trellis models``: train, register, promote, roll back, predict, watch drift.

The commands open the configured data directory directly (training reads the stored
telemetry), so they work with or without a running server; a running server sees the
changes within a second (its routing cache). Tables and progress go to stderr, data
(JSON) to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import httpx
import msgspec
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trellis.cli._common import ConfigOption, api_headers, console, load_or_exit
from trellis.core.clock import now_ms
from trellis.core.errors import TrellisError
from trellis.ml.gate import GateReport
from trellis.ml.inference import PredictRow
from trellis.ml.registry import Stage
from trellis.ml.signature import Feature, Signature
from trellis.platform import Platform

__all__ = ["app"]

app = typer.Typer(help="Model registry: train, register, promote, rollback, predict, drift.")
ByOption = Annotated[str, typer.Option("--by", help="who is acting")]

#: The built-in pump anomaly model's features (the simulator's pump metrics).
PUMP_FEATURES = [
    Feature("temperature", "°C"),
    Feature("vibration", "mm/s"),
    Feature("pressure", "bar"),
]


def _platform(config: Path | None) -> Platform:
    return Platform(load_or_exit(config))


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(1)


@app.command("list")
def list_models(config: ConfigOption = None) -> None:
    """Models with their champion, versions and routing."""
    platform = _platform(config)
    try:
        table = Table("model", "production", "versions", "routing")
        for m in platform.models.registry.models(platform.tenant):
            routing = m.routing.mode.value
            if m.routing.challenger:
                routing += f" → {m.routing.challenger} {m.routing.percent:g}%"
            table.add_row(m.name, m.production or "-", ", ".join(m.versions), routing)
        console.print(table)
    finally:
        platform.close()


@app.command()
def train(
    name: Annotated[str, typer.Argument(help="model name")] = "pump-anomaly",
    version: Annotated[str, typer.Option(help="semantic version to register")] = "1.0.0",
    hours: Annotated[float, typer.Option(help="training window: the last N hours")] = 24.0,
    trees: Annotated[int, typer.Option(help="trees of the forest")] = 50,
    by: ByOption = "trellis-train",
    config: ConfigOption = None,
) -> None:
    """Train an IsolationForest on the pumps' stored telemetry and register it."""
    from trellis.lineage.openlineage import training_run
    from trellis.ml.training import feature_rows, train_isolation_forest

    platform = _platform(config)
    try:
        end = now_ms() + 1
        start = end - int(hours * 3_600_000)
        devices = [d.id for d in platform.registry.find(platform.tenant) if d.model == "pump"]
        with (
            training_run(platform.lineage, platform.tenant, name, version, devices) as run,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress,
        ):
            task = progress.add_task("reading telemetry", total=len(devices) + 2)
            rows = feature_rows(
                platform.store,
                platform.tenant,
                devices,
                [f.name for f in PUMP_FEATURES],
                start,
                end,
                lambda n: progress.advance(task, n),
            )
            progress.update(task, description=f"fitting on {len(rows)} rows")
            trained = train_isolation_forest(
                rows,
                PUMP_FEATURES,
                device_model="pump",
                window=(start, end),
                devices=devices,
                trees=trees,
            )
            progress.advance(task)
            progress.update(task, description="registering")
            trained = msgspec.structs.replace(trained, lineage=run.lineage(trained.lineage))
            registered = platform.models.register_trained(
                platform.tenant, name, version, trained, by
            )
            from trellis.auth.audit import record_cli

            record_cli(platform.settings, "cli.models.train", tenant=platform.tenant, model=name)
            progress.advance(task)
        console.print(
            f"registered {name} {registered.version} ({registered.sha256[:12]}) in stage dev; "
            f"train alarm rate {trained.metrics['train_alarm_rate']:.3f}"
        )
    except (TrellisError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        platform.close()


@app.command()
def register(
    name: str,
    version: str,
    file: Annotated[Path, typer.Argument(help="the ONNX file", exists=True, dir_okay=False)],
    signature: Annotated[Path, typer.Option(help="signature JSON file", exists=True)],
    by: ByOption = "cli",
    config: ConfigOption = None,
) -> None:
    """Register an ONNX file as a new version (stage dev)."""
    platform = _platform(config)
    try:
        parsed = msgspec.json.decode(signature.read_bytes(), type=Signature)
        done = platform.models.register(
            platform.tenant, name, version, file.read_bytes(), parsed, by
        )
        from trellis.auth.audit import record_cli

        record_cli(platform.settings, "cli.models.register", tenant=platform.tenant, model=name)
        console.print(f"registered {name} {done.version} sha256 {done.sha256}")
    except (TrellisError, ValueError, msgspec.ValidationError) as exc:
        raise _fail(str(exc)) from None
    finally:
        platform.close()


@app.command()
def promote(
    name: str,
    version: str,
    stage: Annotated[Stage, typer.Option(help="target stage")] = Stage.PRODUCTION,
    by: ByOption = "cli",
    config: ConfigOption = None,
) -> None:
    """Promote a version; into production only through the validation gate."""
    platform = _platform(config)
    try:
        result = platform.models.promote(platform.tenant, name, version, by, stage)
        from trellis.auth.audit import record_cli

        record_cli(
            platform.settings,
            "cli.models.promote",
            tenant=platform.tenant,
            model=name,
            version=version,
            passed=not isinstance(result, GateReport),
        )
        if isinstance(result, GateReport):
            table = Table("check", "result", "detail", title=f"gate for {name} {version}")
            for check in result.checks:
                table.add_row(
                    check.name, "pass" if check.passed else "[red]FAIL[/red]", check.detail
                )
            console.print(table)
            raise _fail(f"the validation gate failed: {', '.join(result.failed)}")
        console.print(f"{name} {result.version} is now {result.stage.value}")
    except TrellisError as exc:
        raise _fail(str(exc)) from None
    finally:
        platform.close()


@app.command()
def rollback(name: str, by: ByOption = "cli", config: ConfigOption = None) -> None:
    """Put the previous champion back in production."""
    platform = _platform(config)
    try:
        restored = platform.models.rollback(platform.tenant, name, by)
        from trellis.auth.audit import record_cli

        record_cli(platform.settings, "cli.models.rollback", tenant=platform.tenant, model=name)
        console.print(f"{name} {restored.version} is back in production")
    except TrellisError as exc:
        raise _fail(str(exc)) from None
    finally:
        platform.close()


@app.command()
def predict(
    name: str,
    features: Annotated[str, typer.Argument(help='JSON object, e.g. {"vibration": 2.1, ...}')],
    version: Annotated[str | None, typer.Option(help="pin a version")] = None,
    device: Annotated[str | None, typer.Option(help="the device the features come from")] = None,
    config: ConfigOption = None,
) -> None:
    """Predict one row; the result is printed as JSON on stdout."""
    platform = _platform(config)
    try:
        row = PredictRow(msgspec.json.decode(features), device=device)
        result = platform.models.inference.predict(platform.tenant, name, [row], version)
        platform.models.log.flush()
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    except (TrellisError, ValueError, msgspec.DecodeError) as exc:
        raise _fail(str(exc)) from None
    finally:
        platform.close()


@app.command()
def drift(
    name: str,
    url: Annotated[
        str | None, typer.Option(help="a running Trellis (default: the configured http address)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Drift of the champion (PSI and KS per feature, concept drift), checked by the
    running server that holds the input windows; then traffic and carbon per version."""
    settings = load_or_exit(config)
    base = url or f"http://{settings.http.host}:{settings.http.port}"
    try:
        response = httpx.post(
            f"{base.rstrip('/')}/api/v1/models/{name}/drift:check",
            timeout=30,
            headers=api_headers(),
        )
    except httpx.HTTPError as exc:
        console.print(f"[yellow]no drift check:[/yellow] cannot reach Trellis at {base}: {exc}")
    else:
        if response.status_code != 200:
            raise _fail(f"drift check failed ({response.status_code}): {response.text}")
        report = response.json()
        table = Table(
            "feature",
            "PSI",
            "KS",
            "KS p",
            "drifted",
            title=f"{name} {report['version']}: window {report['window']}",
        )
        for f in report["features"]:
            table.add_row(
                f["feature"],
                f"{f['psi']:.3f}",
                f"{f['ks']:.3f}",
                f"{f['ks_pvalue']:.2g}",
                "[red]yes[/red]" if f["drifted"] else "no",
            )
        console.print(table)
        concept = report["concept"]
        console.print(
            f"concept: ADWIN {'changed' if concept['adwin'] else 'stable'}, Page-Hinkley "
            f"{'changed' if concept['page_hinkley'] else 'stable'}, {concept['labels']} labels"
        )
        sys.stdout.write(response.text + "\n")
    platform = Platform(settings)
    try:
        table = Table("version", "served", "shadow", "mean score", "mean µs", "gCO2e/1k")
        for s in platform.models.stats(platform.tenant, name):
            score = "-" if s.mean_score is None else f"{s.mean_score:.4f}"
            table.add_row(
                s.version,
                str(s.served),
                str(s.shadow),
                score,
                f"{s.mean_latency_us:.0f}",
                f"{s.footprint.gco2e_per_1k:.6f}",
            )
        console.print(table)
    finally:
        platform.close()
