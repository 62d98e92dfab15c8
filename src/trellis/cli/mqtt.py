"""``trellis mqtt status``: the MQTT 5 gateway of a running Trellis, read over its API."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.table import Table

from trellis.cli._common import ConfigOption, console, load_or_exit

__all__ = ["app"]

app = typer.Typer(help="The MQTT 5 gateway.", no_args_is_help=True)


@app.command()
def status(
    url: Annotated[
        str | None, typer.Option(help="the running Trellis (default: from config)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Connected, subscriptions, msg/s, lag, refusals, and sequence gaps per device."""
    if url is None:
        settings = load_or_exit(config)
        url = f"http://{settings.http.host}:{settings.http.port}"
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/mqtt/status", timeout=10)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach Trellis at {url}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        console.print(f"[red]error:[/red] {response.json().get('detail', response.text)}")
        raise typer.Exit(1)
    body = response.json()
    state = "[green]connected[/green]" if body["connected"] else "[red]disconnected[/red]"
    console.print(f"{body['broker']} as {body['client_id']}: {state} ({body['connects']} connects)")
    for subscription in body["subscriptions"]:
        console.print(f"  subscribed {subscription}")
    console.print(
        f"  {body['msg_per_s']:.0f} msg/s · lag {body['lag_ms']} ms · in flight "
        f"{body['in_flight']} · received {body['received']} · acked {body['acked']}"
    )
    console.print(
        f"  refused {body['refused']} (impersonation {body['impersonations']}, rate limit "
        f"{body['rate_limited']}, retained {body['retained']}) · QoS 0 shed {body['shed_qos0']}"
    )
    table = Table("device", "last seq", "messages", "gaps", "repeats", "restarts")
    for entry in body["sequences"]:
        table.add_row(
            entry["device"],
            str(entry["last_seq"]),
            str(entry["messages"]),
            str(entry["gaps"]),
            str(entry["repeats"]),
            str(entry["restarts"]),
        )
    console.print(table)
