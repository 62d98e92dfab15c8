"""``trellis mqtt status``, ``command`` and ``twin``: the MQTT 5 gateway of a running
Trellis, over its API."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, api_headers, console, load_or_exit

__all__ = ["app"]

app = typer.Typer(help="The MQTT 5 gateway.", no_args_is_help=True)


def _base_url(url: str | None, config: ConfigOption) -> str:
    if url is None:
        settings = load_or_exit(config)
        url = f"http://{settings.http.host}:{settings.http.port}"
    return url.rstrip("/")


@app.command()
def command(
    device: Annotated[str, typer.Argument(help="the device id")],
    name: Annotated[str, typer.Argument(help="the command, e.g. reboot")],
    args: Annotated[str, typer.Option("--args", help="arguments as a JSON object")] = "{}",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 10.0,
    url: Annotated[
        str | None, typer.Option(help="the running Trellis (default: from config)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send a command to a device and print its answer; exit 1 on timeout or device error."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        console.print(f"[red]error:[/red] --args is not JSON: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(arguments, dict):
        console.print("[red]error:[/red] --args must be a JSON object, e.g. '{\"delay_s\": 5}'")
        raise typer.Exit(2)
    base = _base_url(url, config)
    body = {"name": name, "args": arguments, "timeout_s": timeout}
    try:
        response = httpx.post(
            f"{base}/api/v1/devices/{device}/commands",
            json=body,
            timeout=timeout + 10,
            headers=api_headers(),
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach Trellis at {base}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        detail = response.json().get("detail", response.text)
        console.print(f"[red]error:[/red] {detail}")
        raise typer.Exit(1)
    result = response.json()
    if result["outcome"] == "answered":
        console.print(f"[green]answered[/green] in {result['elapsed_ms']} ms")
        console.print_json(data=result["result"])
        return
    console.print(f"[red]{result['outcome']}[/red]: {result['reason']}")
    raise typer.Exit(1)


@app.command()
def status(
    url: Annotated[
        str | None, typer.Option(help="the running Trellis (default: from config)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Connected, subscriptions, msg/s, lag, refusals, and sequence gaps per device."""
    url = _base_url(url, config)
    try:
        response = httpx.get(f"{url}/api/v1/mqtt/status", timeout=10, headers=api_headers())
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


@app.command()
def twin(
    device: Annotated[str, typer.Argument(help="the device id")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="desired KEY=VALUE (VALUE as JSON, else text; null removes)"),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="the running Trellis (default: from config)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show the device twin, desired beside reported; --set changes desired state first."""
    patch: dict[str, object] = {}
    for item in set_ or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            console.print(f"[red]error:[/red] --set {item!r} is not KEY=VALUE")
            raise typer.Exit(2)
        try:
            patch[key] = json.loads(text)
        except json.JSONDecodeError:
            patch[key] = text
    base = _base_url(url, config)
    path = f"{base}/api/v1/devices/{device}/twin"
    try:
        if patch:
            response = httpx.patch(f"{path}/desired", json=patch, headers=api_headers())
        else:
            response = httpx.get(path, headers=api_headers())
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach Trellis at {base}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        console.print(f"[red]error:[/red] {response.json().get('detail', response.text)}")
        raise typer.Exit(1)
    data = response.json()
    table = Table(
        title=f"{device}: desired v{data['desired_version']}, "
        f"reported v{data['reported_version']} (applied {data['applied_version']})"
    )
    for column in ("key", "desired", "reported", ""):
        table.add_column(column)
    for key in sorted(set(data["desired"]) | set(data["reported"])):
        desired, reported = data["desired"].get(key), data["reported"].get(key)
        pending = "[yellow]pending[/yellow]" if key in data["delta"] else ""
        table.add_row(
            escape(key), escape(json.dumps(desired)), escape(json.dumps(reported)), pending
        )
    console.print(table)
