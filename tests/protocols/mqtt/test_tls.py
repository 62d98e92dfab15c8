"""MQTT over TLS with client certificates against a real Mosquitto: the gateway connects
over mqtts:// with CA, certificate and key, and ingests; a client without a certificate
or with one from another CA is refused."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import run
from tests.protocols.mqtt.conftest import devices, eventually, mqtt_settings
from tests.services import require
from trellis.core.clock import now_ms
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess, MqttPublisher, TlsFiles, mosquitto_binary
from trellis.protocols.mqtt.broker import BrokerAddress

_KeyAndCert = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _issue(
    name: str, issuer: _KeyAndCert | None, *, ca: bool = False, server: bool = False
) -> _KeyAndCert:
    """A P-256 key and a certificate for ``name``, signed by ``issuer`` (self-signed if None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = (key, subject) if issuer is None else (issuer[0], issuer[1].subject)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(signer_key, hashes.SHA256())


def _write(directory: Path, stem: str, pair: _KeyAndCert) -> tuple[Path, Path]:
    key, cert = pair
    key_file, cert_file = directory / f"{stem}.key", directory / f"{stem}.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


class Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger's."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        ca = _issue("Trellis test CA", None, ca=True)
        self.ca_file, _ = _write(directory, "ca", ca)
        self.server_cert, self.server_key = _write(
            directory, "server", _issue("127.0.0.1", ca, server=True)
        )
        self.client_cert, self.client_key = _write(directory, "client", _issue("ingest-1", ca))
        stranger_ca = _issue("Someone else's CA", None, ca=True)
        self.stranger_cert, self.stranger_key = _write(
            directory, "stranger", _issue("intruder", stranger_ca)
        )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoProcess, Pki]]:
    """A Mosquitto whose only listener is TLS and requires a client certificate."""
    require("mosquitto", mosquitto_binary() is not None, "apt install mosquitto")
    pki = Pki(tmp_path / "pki")
    process = MosquittoProcess(
        tmp_path / "broker", tls=TlsFiles(pki.ca_file, pki.server_cert, pki.server_key)
    )
    process.start()
    yield process, pki
    process.stop()


def test_the_gateway_ingests_over_mqtts_with_a_client_certificate(
    tmp_path: Path, tls_broker: tuple[MosquittoProcess, Pki]
) -> None:
    """mqtts:// with CA, client cert and key: the gateway subscribes and stores readings."""
    broker, pki = tls_broker
    assert broker.url.startswith("mqtts://")
    files = {"ca_file": pki.ca_file, "cert_file": pki.client_cert, "key_file": pki.client_key}
    platform = Platform(mqtt_settings(tmp_path, broker.url, **files))
    platform.registry.register(devices(1)[0])
    device = MqttPublisher(BrokerAddress("127.0.0.1", broker.port, tls=True, **files), "tls-device")
    start = now_ms() - 60_000

    async def scenario() -> None:
        async with platform.running():
            gateway = platform.mqtt
            assert gateway is not None
            async with asyncio.timeout(10):
                await gateway.wait_ready()
            assert gateway.status().broker == broker.url
            await asyncio.to_thread(device.connect)
            for seq in range(1, 51):
                body = {"ts": start + seq, "seq": seq, "values": {"vibration": 1.0}}
                device.publish("trellis/v1/default/dev-0001/telemetry", msgspec.json.encode(body))
            await asyncio.to_thread(device.flush)
            await eventually(lambda: gateway.status().acked == 50, "50 acks over TLS")
        assert platform.store.count() == 50

    try:
        run(scenario())
    finally:
        device.close()
        platform.close()


def _mqtt_connect_over_tls(port: int, context: ssl.SSLContext) -> bytes:
    """Handshake, send an MQTT 5 CONNECT, return what the broker answers (b"" if it hung up)."""
    connect = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([5, 0x02, 0, 30, 0, 0, 0])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(connect)
        return tls.recv(64)


@pytest.mark.parametrize("certificate", ["none", "another CA's"])
def test_a_client_without_a_valid_certificate_is_refused(
    tls_broker: tuple[MosquittoProcess, Pki], certificate: str
) -> None:
    """No client certificate, or one from another CA: the broker never says CONNACK."""
    broker, pki = tls_broker
    trusted = ssl.create_default_context(cafile=str(pki.ca_file))
    trusted.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    assert _mqtt_connect_over_tls(broker.port, trusted)[:1] == b"\x20"  # CONNACK: control works
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if certificate != "none":
        context.load_cert_chain(str(pki.stranger_cert), str(pki.stranger_key))
    try:
        answer = _mqtt_connect_over_tls(broker.port, context)
    except (ssl.SSLError, ConnectionError):
        return  # refused in the handshake (TLS 1.2) or at the first read (TLS 1.3)
    assert answer == b"", f"the broker answered {answer!r} to a client without a valid cert"
