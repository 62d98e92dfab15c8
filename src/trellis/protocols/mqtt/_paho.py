"""The one place paho's untyped corners are touched."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["connect_properties", "publish_properties"]


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it unannotated


def connect_properties(session_expiry_s: int, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties of a persistent session, with an optional Receive Maximum."""
    properties = _properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    return properties


def publish_properties() -> Properties:
    """Empty PUBLISH properties to fill in."""
    return _properties(PacketTypes.PUBLISH)
