"""``trellis db``: schema upgrades of both databases, retention, and the storage budget."""

from __future__ import annotations

import typer
from rich.markup import escape

from trellis.cli._common import ConfigOption, console, load_or_exit
from trellis.core.errors import TrellisError

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
    kind = "PostgreSQL" if settings.timeseries_url.startswith("postgres") else "SQLite"
    console.print(f"metadata and time-series schemas are current ({kind})")
