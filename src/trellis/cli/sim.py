"""``trellis sim``: the simulated fleet on its own, into a running Trellis or a file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trellis.cli._common import ConfigOption, console, load_or_exit
from trellis.core.clock import now_ms
from trellis.core.config import Settings
from trellis.core.errors import ConfigError
from trellis.ingest.decode import parse_topic
from trellis.protocols.mqtt import MqttPublisher, parse_broker_url
from trellis.sim.fleet import Fleet

__all__ = ["simulate"]


def simulate(
    url: Annotated[
        str | None, typer.Option(help="a running Trellis to send telemetry to over HTTP")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write JSON lines to this file instead")] = None,
    mqtt: Annotated[
        str | None, typer.Option(help="publish over MQTT 5 (QoS 1) to this broker URL instead")
    ] = None,
    duration: Annotated[float, typer.Option(min=0.1, help="simulated seconds")] = 60.0,
    realtime: Annotated[
        bool, typer.Option("--realtime/--fast", help="pace at the wall clock, or run flat out")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the simulated fleet on its own: into a running Trellis, a broker, or a file."""
    if sum(target is not None for target in (url, out, mqtt)) != 1:
        console.print("[red]error:[/red] give exactly one of --url, --out or --mqtt")
        raise typer.Exit(2)
    settings = load_or_exit(config)
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
        elif mqtt is not None:
            sent = _send_mqtt(
                mqtt, settings, fleet, start, period_ms, ticks, realtime, progress, task
            )
            console.print(f"{sent} messages acknowledged by {mqtt}")
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


def _send_mqtt(
    url: str,
    settings: Settings,
    fleet: Fleet,
    start: int,
    period_ms: int,
    ticks: int,
    realtime: bool,
    progress: Progress,
    task: Any,
) -> int:
    """Publish every tick at QoS 1; returns how many messages the broker acknowledged."""
    try:
        address = parse_broker_url(url, settings.mqtt)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    publisher = MqttPublisher(address, f"trellis-sim-{settings.tenant}")
    publisher.connect()
    try:
        sent = 0
        for tick in range(ticks):
            began = time.monotonic()
            for message in fleet.messages(start + tick * period_ms):
                publisher.publish(message.topic, message.payload)
                sent += 1
            progress.update(task, advance=1, sent=sent)
            if realtime:
                time.sleep(max(0.0, period_ms / 1000 - (time.monotonic() - began)))
        publisher.flush()
        return publisher.acknowledged
    finally:
        publisher.close()
