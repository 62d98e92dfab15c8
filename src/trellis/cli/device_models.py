"""``trellis device-models``: device models imported from WoT, DTDL v3 or YAML files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console, load_or_exit

if TYPE_CHECKING:
    import sqlalchemy as sa

    from trellis.devices.registry import DeviceRegistry

__all__ = ["app"]

app = typer.Typer(help="Device models: import (WoT TM/TD, DTDL v3, YAML), list, show.")


def _registry(config: ConfigOption) -> tuple[DeviceRegistry, sa.Engine]:
    from trellis.devices.registry import DeviceRegistry
    from trellis.store.metadata import open_metadata

    engine = open_metadata(load_or_exit(config).metadata_url)
    return DeviceRegistry(engine), engine


@app.command("import")
def import_model(
    path: Annotated[
        Path, typer.Argument(help="a .tm.jsonld, .td.jsonld, DTDL .json or .yaml file")
    ],
    config: ConfigOption = None,
) -> None:
    """Import a model version; its devices are validated against it from now on."""
    from trellis.contracts.importers import ModelFormatError, load_model_file
    from trellis.core.errors import ConflictError

    try:
        model, fmt = load_model_file(path)
    except ModelFormatError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    registry, engine = _registry(config)
    try:
        registry.put_model(model, fmt)
    except ConflictError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    from trellis.auth.audit import record_cli

    record_cli(load_or_exit(config), "cli.device_models.import", tenant=None, model=model.key)
    console.print(f"imported {escape(model.key)} ({fmt}): {len(model.metrics)} metrics")


@app.command("list")
def list_models(config: ConfigOption = None) -> None:
    """Every model in use, with its version and metrics."""
    registry, engine = _registry(config)
    engine.dispose()
    table = Table("model", "version", "source", "metrics", title="device models")
    for name, model in sorted(registry.models.items()):
        table.add_row(
            escape(name), escape(model.version), model.source, escape(", ".join(model.metrics))
        )
    console.print(table)


@app.command()
def show(name: str, config: ConfigOption = None) -> None:
    """One model as JSON (the version in use)."""
    import msgspec

    registry, engine = _registry(config)
    engine.dispose()
    model = registry.models.get(name)
    if model is None:
        console.print(f"[red]error:[/red] unknown model {escape(name)!r}")
        raise typer.Exit(1)
    typer.echo(msgspec.json.format(msgspec.json.encode(model)).decode())
