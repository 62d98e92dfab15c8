"""What every ``trellis`` sub-command shares: the console and reading the settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from trellis.core.config import Settings, load_settings
from trellis.core.errors import ConfigError

__all__ = [
    "ConfigOption",
    "HostOption",
    "PortOption",
    "api_headers",
    "console",
    "load_or_exit",
]

#: Progress, tables and errors go to stderr; stdout stays for data (CSV, JSON).
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="trellis.toml (default: ./trellis.toml)")
]
HostOption = Annotated[str | None, typer.Option(help="address to listen on")]
PortOption = Annotated[int | None, typer.Option(help="port to listen on")]


def load_or_exit(config: Path | None, host: str | None = None, port: int | None = None) -> Settings:
    http: dict[str, object] = {}
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    """The settings, or exit with code 2 and the reason."""
    try:
        return load_settings(config, **({"http": http} if http else {}))
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def api_headers() -> dict[str, str]:
    """Headers for CLI commands that talk to a running Trellis: the API token from
    ``TRELLIS_TOKEN`` (made with ``trellis users token``), when set. Against
    ``trellis demo`` on loopback none is needed (docs/security.md)."""
    token = os.environ.get("TRELLIS_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}
