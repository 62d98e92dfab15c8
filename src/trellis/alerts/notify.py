"""Notifications: new and escalated alerts pushed to channels (webhook, e-mail).

A :class:`Channel` has one method, ``send``, which either delivers or raises
:class:`DeliveryError`. The :class:`Notifier` owns a bounded queue and one task
(``trellis.alerts.notify``): each notification goes to every channel, retried with
capped, jittered backoff; what a channel still refuses after the last attempt is
written to the dead-letter table with the error, and so is whatever the queue cannot
hold or the shutdown leaves behind. Nothing is dropped without a row saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any, Protocol

import httpx
import msgspec
import sqlalchemy as sa

from trellis.alerts.timeline import EventKind
from trellis.core.clock import now_ms, to_iso
from trellis.core.errors import TrellisError
from trellis.core.retry import backoff_delay
from trellis.core.types import Alert
from trellis.store.metadata import notification_dead_letters, row_dict

__all__ = [
    "Channel",
    "DeadLetter",
    "DeliveryError",
    "EmailChannel",
    "Notification",
    "Notifier",
    "WebhookChannel",
]

log = logging.getLogger(__name__)


class DeliveryError(TrellisError):
    """A channel did not accept a notification (the message says why)."""


class Notification(msgspec.Struct, frozen=True):
    """What happened (``raised`` or ``escalated``) to which alert, and when."""

    kind: str
    alert: Alert
    at_ms: int

    @property
    def subject(self) -> str:
        """One line for people: severity, what, where."""
        a = self.alert
        return f"[{a.severity.value}] {a.type} on {a.device} ({self.kind})"


class DeadLetter(msgspec.Struct, frozen=True):
    """A notification a channel never accepted, with the last error."""

    id: int
    tenant: str
    channel: str
    kind: str
    alert_id: int
    payload: dict[str, Any]
    error: str
    attempts: int
    created_ms: int


class Channel(Protocol):
    """Somewhere notifications go. ``send`` raises :class:`DeliveryError` on failure."""

    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise :class:`DeliveryError`."""
        ...


class WebhookChannel:
    """POST the notification as JSON; any 2xx is delivery."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        self.name = f"webhook:{url}"
        self._url = url
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers or {})

    async def send(self, notification: Notification) -> None:
        """POST it; a refused connection, timeout or non-2xx is a DeliveryError."""
        try:
            response = await self._client.post(
                self._url,
                content=msgspec.json.encode(notification),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class EmailChannel:
    """Send an e-mail through an SMTP server (stdlib ``smtplib``, in a thread)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.name = f"smtp:{host}:{port}"
        self._host, self._port = host, port
        self._sender, self._recipients = sender, list(recipients)
        self._starttls = starttls
        self._login = (username, password) if username and password else None
        self._timeout_s = timeout_s

    def _message(self, n: Notification) -> EmailMessage:
        a = n.alert
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["Subject"] = n.subject
        message.set_content(
            f"{a.message}\n\nalert {a.id} · rule {a.rule} · device {a.device}"
            f"{f' · site {a.site}' if a.site else ''}\nraised {to_iso(a.raised_ms)}, "
            f"count {a.count}, status {a.status.value}\n"
        )
        return message

    def _send_blocking(self, n: Notification) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._login is not None:
                smtp.login(*self._login)
            smtp.send_message(self._message(n))

    async def send(self, notification: Notification) -> None:
        """Send it; any SMTP or socket error is a DeliveryError."""
        try:
            await asyncio.to_thread(self._send_blocking, notification)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


class Notifier:
    """Deliver new and escalated alerts to every channel, with retries and dead letters.

    Build it on the event loop; :meth:`submit` may be called from any thread.
    """

    def __init__(
        self,
        engine: sa.Engine,
        channels: Sequence[Channel],
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        queue_size: int = 1_000,
    ) -> None:
        self._engine = engine
        self.channels = list(channels)
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._queue_size = queue_size
        # One slot more than offered, so the stop sentinel always fits.
        self._queue: asyncio.Queue[Notification | None] = asyncio.Queue(queue_size + 1)
        self._overflow: list[Notification] = []
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self.delivered = 0
        self.dead = 0

    def submit(self, alert: Alert, kind: EventKind) -> None:
        """Queue a notification (thread-safe, never blocks the caller)."""
        if not self.channels:
            return
        notification = Notification(kind.value, alert, now_ms())
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing runs anymore
            self._loop.call_soon_threadsafe(self._offer, notification)

    def _offer(self, notification: Notification) -> None:
        if self._queue.qsize() >= self._queue_size:
            self._overflow.append(notification)  # dead-lettered by run(), not dropped
        else:
            self._queue.put_nowait(notification)

    async def _bury_overflow(self, reason: str) -> None:
        overflow, self._overflow = self._overflow, []
        for n in overflow:
            for channel in self.channels:
                await asyncio.to_thread(self._bury, channel.name, n, reason, 0)

    def _bury(self, channel: str, n: Notification, error: str, attempts: int) -> None:
        """Write a dead letter (in a thread)."""
        with self._engine.begin() as c:
            c.execute(
                notification_dead_letters.insert().values(
                    tenant=n.alert.tenant,
                    channel=channel,
                    kind=n.kind,
                    alert_id=n.alert.id,
                    payload=msgspec.to_builtins(n),
                    error=error,
                    attempts=attempts,
                    created_ms=now_ms(),
                )
            )
        self.dead += 1
        log.warning("notification of alert %s to %s dead-lettered: %s", n.alert.id, channel, error)

    async def _deliver(self, channel: Channel, n: Notification) -> None:
        error = ""
        for attempt in range(1, self._attempts + 1):
            try:
                await channel.send(n)
            except DeliveryError as exc:
                error = str(exc)
                if self._closing:
                    error = f"shutdown before delivery; last error: {error}"
                    break
                if attempt < self._attempts:
                    delay = backoff_delay(attempt, self._backoff_s, self._max_backoff_s)
                    await asyncio.sleep(delay)
                continue
            self.delivered += 1
            return
        await asyncio.to_thread(self._bury, channel.name, n, error, attempt)

    async def run(self) -> None:
        """Deliver until :meth:`stop`; what the queue could not hold is dead-lettered."""
        while (n := await self._queue.get()) is not None:
            await asyncio.gather(*(self._deliver(channel, n) for channel in self.channels))
            if self._overflow:
                await self._bury_overflow("notification queue full")
            self._queue.task_done()
        await self._bury_overflow("notification queue full")
        self._queue.task_done()
        for channel in self.channels:
            close = getattr(channel, "aclose", None)
            if close is not None:
                await close()

    async def join(self) -> None:
        """Wait until every notification submitted so far is delivered or dead-lettered
        (submissions from other threads arrive one loop iteration later)."""
        await asyncio.sleep(0)
        await self._queue.join()

    def stop(self) -> None:
        """End :meth:`run` after one attempt at each queued notification: what fails
        then is dead-lettered at once instead of retried (a shutdown must not wait
        for backoff)."""
        self._closing = True
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    def dead_letters(self, tenant: str, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters of the tenant."""
        query = (
            sa.select(notification_dead_letters)
            .where(notification_dead_letters.c.tenant == tenant)
            .order_by(notification_dead_letters.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as c:
            return [msgspec.convert(row_dict(r), DeadLetter) for r in c.execute(query).mappings()]
