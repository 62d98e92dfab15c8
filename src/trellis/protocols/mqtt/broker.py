"""Where the broker is: ``mqtt://`` and ``mqtts://`` URLs, and the TLS files that go with them."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec

from trellis.core.config import MqttSettings
from trellis.core.errors import ConfigError

__all__ = ["BrokerAddress", "parse_broker_url"]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerAddress(msgspec.Struct, frozen=True):
    """A broker endpoint and how to authenticate to it."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context (server verified against ``ca_file`` or the system CAs)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str, settings: MqttSettings | None = None) -> BrokerAddress:
    """The broker named by ``url``; TLS files come from ``settings``. Raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"MQTT URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"MQTT URL {url!r}: only scheme://[user:password@]host[:port]")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConfigError(f"MQTT URL {url!r}: invalid port") from None
    tls = parts.scheme == "mqtts"
    files: dict[str, Path | None] = {"ca_file": None, "cert_file": None, "key_file": None}
    if settings is not None:
        files = {
            "ca_file": settings.ca_file,
            "cert_file": settings.cert_file,
            "key_file": settings.key_file,
        }
    if not tls and any(files.values()):
        raise ConfigError(f"MQTT URL {url!r}: CA or client certificate given for plain mqtt://")
    for name, path in files.items():
        if path is not None and not path.is_file():
            raise ConfigError(f"mqtt.{name} {str(path)!r} does not exist")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **files,
    )
