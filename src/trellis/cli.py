"""The ``trellis`` command: demo, serve, sim, version."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import msgspec
import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trellis._version import __version__
from trellis.core.clock import now_ms
from trellis.core.config import Settings, load_settings
from trellis.core.errors import ConfigError
from trellis.ingest.decode import parse_topic
from trellis.sim.fleet import Fleet

__all__ = ["app", "main"]

app = typer.Typer(
    help="Trellis: an AIoT platform from pilot to production.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="trellis.toml (default: ./trellis.toml)")
]
HostOption = Annotated[str | None, typer.Option(help="address to listen on")]
PortOption = Annotated[int | None, typer.Option(help="port to listen on")]


def _settings(config: Path | None, host: str | None = None, port: int | None = None) -> Settings:
    http: dict[str, object] = {}
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    try:
        return load_settings(config, **({"http": http} if http else {}))
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


class _Server(uvicorn.Server):
    """uvicorn that runs ``on_exit`` as soon as it is asked to stop.

    uvicorn waits for open connections before the app's lifespan ends, so the app
    cannot see the shutdown coming; without this, every open dashboard page (a live
    stream) would hold Ctrl-C up until the graceful timeout cancels it.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def _serve(settings: Settings, *, simulate: bool) -> None:
    from trellis.api.app import create_app  # keep `trellis version` fast
    from trellis.ui.routes import end_streams

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # store.metadata says what changed
    url = f"http://{settings.http.host}:{settings.http.port}"
    fleet = settings.sim.pumps + settings.sim.rooms
    console.print(f"[bold green]Trellis {__version__}[/bold green] data in {settings.data_dir}/")
    if simulate:
        console.print(
            f"simulated fleet: {fleet} devices at {settings.sim.rate_hz:g} Hz; "
            f"fault on {settings.sim.fault_device} after {settings.sim.fault_after_s:g} s"
        )
    console.print(f"dashboard  [link={url}/]{url}/[/link]")
    console.print(f"API docs   {url}/api/v1/docs")
    console.print("press Ctrl-C to stop")
    application = create_app(settings, simulate=simulate)
    server = _Server(
        uvicorn.Config(
            application,
            host=settings.http.host,
            port=settings.http.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        ),
        on_exit=lambda: end_streams(application),
    )
    server.run()


@app.command()
def demo(config: ConfigOption = None, host: HostOption = None, port: PortOption = None) -> None:
    """Start the platform with a simulated fleet and the dashboard (embedded mode)."""
    _serve(_settings(config, host, port), simulate=True)


@app.command()
def serve(
    config: ConfigOption = None,
    host: HostOption = None,
    port: PortOption = None,
    sim: Annotated[bool, typer.Option("--sim/--no-sim", help="also run the simulator")] = False,
) -> None:
    """Start the platform (API, dashboard, ingest, rules)."""
    _serve(_settings(config, host, port), simulate=sim)


@app.command("sim")
def simulate(
    url: Annotated[
        str | None, typer.Option(help="a running Trellis to send telemetry to over HTTP")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write JSON lines to this file instead")] = None,
    duration: Annotated[float, typer.Option(min=0.1, help="simulated seconds")] = 60.0,
    realtime: Annotated[
        bool, typer.Option("--realtime/--fast", help="pace at the wall clock, or run flat out")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the simulated fleet on its own, into a running Trellis or a file."""
    if (url is None) == (out is None):
        console.print("[red]error:[/red] give exactly one of --url or --out")
        raise typer.Exit(2)
    settings = _settings(config)
    fleet = Fleet(settings.sim, settings.tenant)
    period_ms = int(1000 / settings.sim.rate_hz)
    ticks = max(1, int(duration * 1000 / period_ms))
    start = now_ms() - (0 if realtime else ticks * period_ms)
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} ticks · {task.fields[sent]} messages"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("sim", total=ticks, sent=0)
        sent = 0
        if out is not None:
            with out.open("wb") as sink:
                for tick in range(ticks):
                    for message in fleet.messages(start + tick * period_ms):
                        sink.write(msgspec.json.encode(message) + b"\n")
                        sent += 1
                    progress.update(task, advance=1, sent=sent)
        else:
            assert url is not None
            asyncio.run(_send_http(url, fleet, start, period_ms, ticks, realtime, progress, task))


async def _send_http(
    url: str,
    fleet: Fleet,
    start: int,
    period_ms: int,
    ticks: int,
    realtime: bool,
    progress: Progress,
    task: object,
) -> None:
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10) as client:
        for device in fleet.devices():
            body = {"model": device.model, "name": device.name, "site": device.site}
            (await client.put(f"/api/v1/devices/{device.id}", json=body)).raise_for_status()
        sent = refused = 0
        for tick in range(ticks):
            began = time.monotonic()
            for message in fleet.messages(start + tick * period_ms):
                address = parse_topic(message.topic)
                assert address is not None
                response = await client.post(
                    f"/api/v1/telemetry/{address[1]}", content=message.payload
                )
                if response.status_code == 422:
                    refused += 1
                elif response.status_code != 202:
                    response.raise_for_status()
                sent += 1
            progress.update(task, advance=1, sent=sent)  # type: ignore[arg-type]  # rich's TaskID
            if realtime:
                await asyncio.sleep(max(0.0, period_ms / 1000 - (time.monotonic() - began)))
        if refused:
            console.print(f"[yellow]{refused} messages were quarantined by the platform[/yellow]")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``trellis`` script."""
    app()
