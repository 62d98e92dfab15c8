"""Notifications against real local servers: webhooks (retries, dead letters), SMTP."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.helpers import NOW_MS, TENANT, run
from tests.serving import free_port, wait_until
from trellis.alerts import AlertService
from trellis.alerts.notify import EmailChannel, Notification, Notifier, WebhookChannel
from trellis.alerts.timeline import EventKind
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.core.types import Alert, AlertSeverity
from trellis.platform import Platform


@dataclass
class Hook:
    """A local HTTP server that answers 500 to the first ``fail`` POSTs."""

    url: str
    fail: int = 0
    bodies: list[bytes] = field(default_factory=list)
    attempts: int = 0


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A real webhook receiver on a free port."""
    state = Hook("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.attempts += 1
            if state.attempts <= state.fail:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"busy")
                return
            state.bodies.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _alert(service: AlertService, device: str = "pump-0001") -> Alert:
    return service.raise_alert(
        tenant=TENANT,
        device=device,
        rule="hot",
        type="Hot",
        severity=AlertSeverity.CRITICAL,
        message="temperature 95 > 80",
        value=95.0,
        at_ms=NOW_MS,
    )


async def _deliver(
    engine: sa.Engine, channels: list, alerts: list[Alert], **kw: object
) -> Notifier:
    notifier = Notifier(engine, channels, backoff_s=0.01, **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(notifier.run(), name="test.notify")
    for alert in alerts:
        notifier.submit(alert, EventKind.RAISED)
    await notifier.join()
    notifier.stop()
    await task
    return notifier


def test_webhook_is_retried_until_it_accepts(metadata_engine: sa.Engine, hook: Hook) -> None:
    """Two 500s, then 204: delivered once on the third attempt, no dead letter."""
    hook.fail = 2
    alert = _alert(AlertService(metadata_engine))
    notifier = run(_deliver(metadata_engine, [WebhookChannel(hook.url)], [alert], attempts=5))
    assert (hook.attempts, notifier.delivered, notifier.dead) == (3, 1, 0)
    sent = msgspec.json.decode(hook.bodies[0], type=Notification)
    assert (sent.kind, sent.alert.id, sent.alert.severity) == ("raised", alert.id, "critical")
    assert notifier.dead_letters(TENANT) == []


def test_a_webhook_that_keeps_failing_ends_in_the_dead_letters(
    metadata_engine: sa.Engine, hook: Hook
) -> None:
    """After the last attempt the notification is a dead letter with the HTTP error."""
    hook.fail = 100
    alert = _alert(AlertService(metadata_engine))
    notifier = run(_deliver(metadata_engine, [WebhookChannel(hook.url)], [alert], attempts=3))
    assert hook.attempts == 3
    (dead,) = notifier.dead_letters(TENANT)
    assert (dead.alert_id, dead.attempts, dead.kind) == (alert.id, 3, "raised")
    assert dead.error.startswith("HTTP 500")
    assert dead.channel == f"webhook:{hook.url}"
    assert dead.payload["alert"]["id"] == alert.id


def test_an_unreachable_webhook_is_dead_lettered_with_the_reason(
    metadata_engine: sa.Engine,
) -> None:
    """Connection refused on every attempt: a dead letter naming the connect error."""
    alert = _alert(AlertService(metadata_engine))
    url = f"http://127.0.0.1:{free_port()}/nobody"
    notifier = run(_deliver(metadata_engine, [WebhookChannel(url)], [alert], attempts=2))
    (dead,) = notifier.dead_letters(TENANT)
    assert "ConnectError" in dead.error


class _Inbox:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def test_email_reaches_a_local_smtp_server(metadata_engine: sa.Engine) -> None:
    """A new alert becomes one e-mail to every recipient, subject naming what and where."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        alert = _alert(AlertService(metadata_engine))
        channel = EmailChannel(
            host="127.0.0.1",
            port=port,
            sender="trellis@example.org",
            recipients=["ops@example.org", "lead@example.org"],
        )
        notifier = run(_deliver(metadata_engine, [channel], [alert]))
    finally:
        controller.stop()
    assert notifier.delivered == 1
    (envelope,) = inbox.messages
    assert envelope.rcpt_tos == ["ops@example.org", "lead@example.org"]
    assert isinstance(envelope.content, bytes)
    mail = message_from_bytes(envelope.content)
    assert mail["Subject"] == "[critical] Hot on pump-0001 (raised)"
    assert "temperature 95 > 80" in mail.get_payload()


def test_an_smtp_server_that_is_down_leaves_a_dead_letter(metadata_engine: sa.Engine) -> None:
    """No SMTP server listening: the e-mail is a dead letter, not an exception."""
    alert = _alert(AlertService(metadata_engine))
    channel = EmailChannel(
        host="127.0.0.1", port=free_port(), sender="t@example.org", recipients=["o@example.org"]
    )
    notifier = run(_deliver(metadata_engine, [channel], [alert], attempts=2))
    (dead,) = notifier.dead_letters(TENANT)
    assert "ConnectionRefusedError" in dead.error


def test_a_full_queue_dead_letters_instead_of_dropping(
    metadata_engine: sa.Engine, hook: Hook
) -> None:
    """Beyond the queue's capacity notifications become dead letters, each accounted for."""
    service = AlertService(metadata_engine)
    alerts = [_alert(service, f"pump-{n}") for n in range(5)]
    notifier = run(_deliver(metadata_engine, [WebhookChannel(hook.url)], alerts, queue_size=2))
    assert notifier.delivered + notifier.dead == 5
    assert notifier.dead >= 1
    assert all(d.error == "notification queue full" for d in notifier.dead_letters(TENANT))


def test_the_platform_notifies_a_configured_webhook(tmp_path: Path, hook: Hook) -> None:
    """With [alerts] webhooks set, a new alert while running reaches the webhook."""
    settings = load_settings(data_dir=tmp_path / "d", alerts={"webhooks": [{"url": hook.url}]})
    platform = Platform(settings)

    async def scenario() -> None:
        async with platform.running():
            names = {t.get_name() for t in asyncio.all_tasks()}
            assert "trellis.alerts.notify" in names
            await asyncio.to_thread(
                platform.alerts.raise_alert,
                tenant=TENANT,
                device="pump-0001",
                rule="hot",
                type="Hot",
                severity=AlertSeverity.MAJOR,
                message="m",
                value=1.0,
                at_ms=now_ms(),
            )
            await asyncio.to_thread(wait_until, lambda: bool(hook.bodies), 10.0, "the webhook")

    try:
        run(scenario())
    finally:
        platform.close()
    assert msgspec.json.decode(hook.bodies[0])["kind"] == "raised"


def test_bad_channel_settings_are_refused(tmp_path: Path) -> None:
    """A webhook URL without http(s) or an e-mail without recipients is a ConfigError."""
    from trellis.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"webhooks\.0\.url"):
        load_settings(data_dir=tmp_path, alerts={"webhooks": [{"url": "ftp://x"}]})
    with pytest.raises(ConfigError, match="recipients"):
        load_settings(
            data_dir=tmp_path,
            alerts={"email": {"host": "h", "sender": "a@b", "recipients": []}},
        )
