"""``trellis demo`` and ``trellis serve``: the platform, its API and dashboard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import typer
import uvicorn

from trellis._version import __version__
from trellis.cli._common import ConfigOption, HostOption, PortOption, console, load_or_exit
from trellis.core.config import Settings

__all__ = ["demo", "serve"]


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


def demo(config: ConfigOption = None, host: HostOption = None, port: PortOption = None) -> None:
    """Start the platform with a simulated fleet and the dashboard (embedded mode).

    The demo binds to 127.0.0.1 and treats local callers as the admin (``auth.loopback_admin``),
    so the dashboard works without a login; every call is still authorised and audited.
    """
    settings = load_or_exit(config, host, port)
    if settings.http.host in ("127.0.0.1", "::1", "localhost"):
        auth = settings.auth.model_copy(update={"loopback_admin": True})
        settings = settings.model_copy(update={"auth": auth})
    else:  # reachable from elsewhere: no implicit admin, tokens as with `serve`
        console.print("demo on a non-loopback address: the API needs tokens (docs/security.md)")
    _serve(settings, simulate=True)


def serve(
    config: ConfigOption = None,
    host: HostOption = None,
    port: PortOption = None,
    sim: Annotated[bool, typer.Option("--sim/--no-sim", help="also run the simulator")] = False,
) -> None:
    """Start the platform (API, dashboard, ingest, rules)."""
    _serve(load_or_exit(config, host, port), simulate=sim)
