"""Server-sent event streams for open dashboard pages.

A device page gets one stream carrying its device's readings and alert changes; the
alert inbox gets one carrying every alert change of the tenant. Each stream owns
its listeners and closes them however it ends: the browser leaving (starlette
cancels the response), the browser gone without a word (noticed at the next idle
poll), the server stopping, or the stream reaching its lifetime.

uvicorn drains open connections *before* the app's lifespan ends, so an app cannot
see a shutdown coming: whoever runs the server calls :func:`end_streams` when asked
to exit (``trellis serve`` does), and every stream ends within a second. Without
that call, the lifetime bounds the wait. ``EventSource`` reconnects by itself, and
``Last-Event-ID`` lets a device stream backfill the gap from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.sse import ServerSentEvent

from trellis.core.broadcast import Listener
from trellis.core.clock import now_ms
from trellis.core.types import Alert, Device, Reading
from trellis.platform import Platform
from trellis.ui.views import CHART_MAX_POINTS, CHART_WINDOW_MS

__all__ = ["alert_events", "device_events", "end_streams", "stop_event"]

#: How long a stream waits for an item before it checks that the browser is there.
IDLE_POLL_S = 1.0
#: A stream ends after this long; the browser reconnects after ``RECONNECT_MS``.
MAX_STREAM_S = 120.0
RECONNECT_MS = 1_500

_encoder = msgspec.json.Encoder()
_STOP = "trellis_ui_streams_stop"


def stop_event(app: FastAPI) -> threading.Event:
    """The event that tells the streams of ``app`` to end (see :func:`end_streams`)."""
    event: threading.Event | None = getattr(app.state, _STOP, None)
    if event is None:
        event = threading.Event()
        setattr(app.state, _STOP, event)
    return event


def end_streams(app: FastAPI) -> None:
    """End every live stream of ``app`` within a second, and refuse new ones.

    Safe to call from a signal handler or another thread; call it when the server
    is asked to exit, so open dashboards do not hold up the shutdown.
    """
    stop_event(app).set()


class _Merged:
    """Items from several listeners, whichever comes first, tagged with its source.

    One pending ``get`` task per listener; the tasks belong to this object and are
    cancelled by :meth:`close`.
    """

    def __init__(self, sources: Mapping[str, Listener[Any]]) -> None:
        self._sources = dict(sources)
        self._pending: dict[asyncio.Task[Any], str] = {}

    async def next(self, idle_s: float) -> tuple[str, Any] | None:
        """The next item as ``(source, item)``, or ``None`` after ``idle_s`` seconds of silence."""
        waiting = set(self._pending.values())
        for name, listener in self._sources.items():
            if name not in waiting:
                task = asyncio.create_task(listener.get(), name=f"trellis.ui.sse.{name}")
                self._pending[task] = name
        done, _ = await asyncio.wait(
            self._pending, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            return None
        task = min(done, key=lambda t: list(self._pending).index(t))  # oldest request first
        name = self._pending.pop(task)
        return name, task.result()

    def close(self) -> None:
        """Cancel the pending gets and detach from every listener."""
        for task in self._pending:
            task.cancel()
        self._pending.clear()
        for listener in self._sources.values():
            listener.close()


async def _stream(
    request: Request,
    sources: Mapping[str, Listener[Any]],
    handle: Callable[[str, Any], ServerSentEvent | None],
    first: list[ServerSentEvent],
) -> AsyncGenerator[ServerSentEvent, None]:
    merged = _Merged(sources)
    stop = stop_event(request.app)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_STREAM_S
    try:
        for event in first:
            yield event
        while loop.time() < deadline and not stop.is_set():
            item = await merged.next(min(IDLE_POLL_S, max(0.0, deadline - loop.time())))
            if item is None:
                if await request.is_disconnected():
                    return
                continue
            out = handle(*item)
            if out is not None:
                yield out
    finally:
        merged.close()


def _alert_event(alert: Alert) -> ServerSentEvent:
    payload = {"id": alert.id, "device": alert.device, "status": alert.status.value}
    return ServerSentEvent(event="alert", raw_data=_encoder.encode(payload).decode())


def _points(readings: list[Reading]) -> dict[str, list[tuple[int, float]]]:
    by_metric: dict[str, list[tuple[int, float]]] = {}
    for reading in readings:
        by_metric.setdefault(reading.metric, []).append((reading.ts, reading.value))
    return by_metric


def _readings_event(by_metric: dict[str, list[tuple[int, float]]]) -> ServerSentEvent | None:
    if not by_metric:
        return None
    newest = max(points[-1][0] for points in by_metric.values())
    return ServerSentEvent(
        event="readings", raw_data=_encoder.encode(by_metric).decode(), id=str(newest)
    )


def _backfill(
    platform: Platform, device: Device, metrics: list[str], since_ms: int, end_ms: int
) -> dict[str, list[tuple[int, float]]]:
    """Stored points after ``since_ms``, so a (re)connecting page has no gap."""
    out: dict[str, list[tuple[int, float]]] = {}
    for metric in metrics:
        points = platform.store.query(
            platform.tenant, device.id, metric, since_ms + 1, end_ms, CHART_MAX_POINTS
        )
        if points:
            out[metric] = [(p.ts, p.value) for p in points]
    return out


async def device_events(
    request: Request, platform: Platform, device: Device, since_ms: int | None
) -> AsyncGenerator[ServerSentEvent, None]:
    """``readings`` events (``{metric: [[ts, value], …]}``, id = newest ts) and
    ``alert`` events for one device, after the points stored since ``since_ms``."""
    tenant = platform.tenant
    sources: dict[str, Listener[Any]] = {
        "readings": platform.live.listen(tenant, device.id),
        "alerts": platform.alerts.events.listen(),
    }
    first = [ServerSentEvent(comment="live", retry=RECONNECT_MS)]
    try:
        if since_ms is not None:
            # Listening started above, so nothing falls between the backfill and
            # the live points; the page drops the points it already has.
            end = now_ms() + 1
            since = max(since_ms, end - CHART_WINDOW_MS)
            model = platform.registry.models.get(device.model)
            metrics = list(model.metrics) if model else []
            metrics += [m for m in platform.live.latest(tenant, device.id) if m not in metrics]
            stored = await asyncio.to_thread(_backfill, platform, device, metrics, since, end)
            event = _readings_event(stored)
            if event is not None:
                first.append(event)
    except BaseException:
        for listener in sources.values():
            listener.close()
        raise

    def handle(source: str, item: Any) -> ServerSentEvent | None:
        if source == "readings":
            return _readings_event(_points(item))
        alert: Alert = item
        if alert.tenant == tenant and alert.device == device.id:
            return _alert_event(alert)
        return None

    async with contextlib.aclosing(_stream(request, sources, handle, first)) as events:
        async for event in events:
            yield event


async def alert_events(
    request: Request, platform: Platform
) -> AsyncGenerator[ServerSentEvent, None]:
    """An ``alert`` event (``{id, device, status}``) for every change of a tenant's alert."""
    tenant = platform.tenant

    def handle(_: str, alert: Alert) -> ServerSentEvent | None:
        return _alert_event(alert) if alert.tenant == tenant else None

    sources = {"alerts": platform.alerts.events.listen()}
    first = [ServerSentEvent(comment="live", retry=RECONNECT_MS)]
    async with contextlib.aclosing(_stream(request, sources, handle, first)) as events:
        async for event in events:
            yield event
