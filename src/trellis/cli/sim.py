"""``trellis sim``: the simulated fleet on its own, into a running Trellis, a broker or a file.

Without ``--scenario`` it runs the demo fleet of the settings (``[sim]``); with one it
runs the scenario file on its simulated clock, flat out or ``--speed`` times real time,
and writes the ground truth of its faults next to the output (or to ``--truth``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trellis.cli._common import ConfigOption, api_headers, console, load_or_exit
from trellis.core.clock import now_ms
from trellis.core.config import Settings
from trellis.core.errors import ConfigError
from trellis.core.types import Device, RawMessage
from trellis.ingest.decode import parse_topic
from trellis.protocols.mqtt import MqttPublisher, parse_broker_url
from trellis.sim.engine import Frame, Simulation
from trellis.sim.fleet import Fleet
from trellis.sim.outputs import MessageEncoder, open_sink
from trellis.sim.scenario import ScenarioError, load_scenario

__all__ = ["simulate"]

_Ticks = Iterator[tuple[int, list[Frame]]]


class _Run(msgspec.Struct):
    """What one invocation simulates: frames per tick, how to encode them, the devices."""

    ticks: int
    step_s: float
    frames: Any  # _Ticks; msgspec cannot type an iterator
    encoder: MessageEncoder
    devices: list[Device]
    simulation: Simulation


def _demo_run(settings: Settings, duration: float, realtime: bool) -> _Run:
    period_ms = int(1000 / settings.sim.rate_hz)
    ticks = max(1, int(duration * 1000 / period_ms))
    start = now_ms() - (0 if realtime else ticks * period_ms)
    fleet = Fleet(settings.sim, settings.tenant, start_ms=start)

    def frames() -> _Ticks:
        for tick in range(ticks):
            ts = start + tick * period_ms
            yield ts, fleet.simulation.step_to(ts)

    return _Run(ticks, period_ms / 1000, frames(), fleet.encoder, fleet.devices(), fleet.simulation)


def _scenario_run(
    settings: Settings, path: Path, seed: int | None, live: bool, paced: bool
) -> _Run:
    """The scenario's run; ``live`` (a platform receives it) moves its start to the
    wall clock, so its readings are neither stale nor from the future to the platform."""
    try:
        plan = load_scenario(path, seed)
    except ScenarioError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if live:
        start = now_ms() - (0 if paced else round(plan.ticks * plan.step_s * 1000))
        plan = msgspec.structs.replace(plan, start_ms=start)
    simulation = Simulation(plan)
    devices = [
        Device(
            tenant=settings.tenant,
            id=device,
            model=model,
            name=device,
            site=site,
            attributes={"simulated": True},
        )
        for device, model, site in simulation.device_ids()
    ]
    encoder = MessageEncoder(settings.tenant, f"sim-{secrets.token_hex(4)}")
    return _Run(plan.ticks, plan.step_s, iter(simulation), encoder, devices, simulation)


def simulate(
    url: Annotated[
        str | None, typer.Option(help="a running Trellis to send telemetry to over HTTP")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="write to this file: .csv or .parquet readings, .jsonl messages"),
    ] = None,
    mqtt: Annotated[
        str | None, typer.Option(help="publish over MQTT 5 (QoS 1) to this broker URL instead")
    ] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="a scenario file (TOML) instead of the demo fleet")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    truth: Annotated[
        Path | None, typer.Option(help="where to write the faults' ground truth (JSON)")
    ] = None,
    duration: Annotated[float, typer.Option(min=0.1, help="simulated seconds (demo fleet)")] = 60.0,
    realtime: Annotated[
        bool, typer.Option("--realtime/--fast", help="pace at the wall clock, or run flat out")
    ] = False,
    speed: Annotated[
        float | None,
        typer.Option(min=0.0, help="simulated seconds per wall second; 0 = flat out"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run a simulated fleet on its own: into a running Trellis, a broker, or a file."""
    if sum(target is not None for target in (url, out, mqtt)) != 1:
        console.print("[red]error:[/red] give exactly one of --url, --out or --mqtt")
        raise typer.Exit(2)
    if out is not None and out.suffix not in (".csv", ".parquet", ".jsonl"):
        console.print(f"[red]error:[/red] --out {out}: write .csv, .parquet or .jsonl")
        raise typer.Exit(2)
    settings = load_or_exit(config)
    pace = (1.0 if realtime else 0.0) if speed is None else speed
    run = (
        _demo_run(settings, duration, realtime)
        if scenario is None
        else _scenario_run(settings, scenario, seed, live=out is None, paced=pace > 0)
    )
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} ticks · {task.fields[sent]} sent"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("sim", total=run.ticks, sent=0)
        ticks = _paced(run, pace, progress, task)
        if out is not None:
            sent = _write(out, run, ticks, progress, task)
            console.print(f"{sent} {'messages' if out.suffix == '.jsonl' else 'readings'} → {out}")
        elif mqtt is not None:
            sent = _send_mqtt(mqtt, settings, run, ticks, progress, task)
            console.print(f"{sent} messages acknowledged by {mqtt}")
        else:
            assert url is not None
            asyncio.run(_send_http(url, run, ticks, progress, task))
    where = truth or (out.with_name(out.stem + ".truth.json") if out is not None else None)
    if where is not None and run.simulation.truth:
        where.write_bytes(msgspec.json.format(msgspec.json.encode(run.simulation.truth)))
        console.print(f"ground truth of {len(run.simulation.truth)} faults → {where}")


def _paced(run: _Run, speed: float, progress: Progress, task: Any) -> _Ticks:
    """The run's ticks, each released no sooner than ``step_s / speed`` after the last."""
    began = time.monotonic()
    for done, (ts, frames) in enumerate(run.frames, start=1):
        yield ts, frames
        progress.update(task, completed=done)
        if speed > 0:
            time.sleep(max(0.0, began + done * run.step_s / speed - time.monotonic()))


def _write(out: Path, run: _Run, ticks: _Ticks, progress: Progress, task: Any) -> int:
    if out.suffix == ".jsonl":
        sent = 0
        with out.open("wb") as lines:
            for ts, frames in ticks:
                for message in run.encoder.messages(frames, ts):
                    lines.write(msgspec.json.encode(message) + b"\n")
                    sent += 1
                progress.update(task, sent=sent)
        return sent
    try:
        chosen = open_sink(out)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    with chosen:
        for _, frames in ticks:
            chosen.write(frames)
            progress.update(task, sent=chosen.rows)
    return chosen.rows


async def _send_http(url: str, run: _Run, ticks: _Ticks, progress: Progress, task: Any) -> None:
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), timeout=10, headers=api_headers()
    ) as client:
        for device in run.devices:
            body = {"model": device.model, "name": device.name, "site": device.site}
            (await client.put(f"/api/v1/devices/{device.id}", json=body)).raise_for_status()
        sent = refused = 0
        for ts, frames in ticks:
            for message in run.encoder.messages(frames, ts):
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
            progress.update(task, sent=sent)
        if refused:
            console.print(f"[yellow]{refused} messages were quarantined by the platform[/yellow]")


def _send_mqtt(
    url: str, settings: Settings, run: _Run, ticks: _Ticks, progress: Progress, task: Any
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
        for ts, frames in ticks:
            messages: list[RawMessage] = run.encoder.messages(frames, ts)
            for message in messages:
                publisher.publish(message.topic, message.payload)
            sent += len(messages)
            progress.update(task, sent=sent)
        publisher.flush()
        return publisher.acknowledged
    finally:
        publisher.close()
