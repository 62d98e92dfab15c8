"""The topic namespace: ``trellis/v1/{tenant}/{device}/{kind}``.

One level per concept, as AWS IoT and Sparkplug do: the tenant, then the device,
then what the message is. Devices publish ``telemetry``, ``events`` and ``state``
(reported twin) and command ``responses``; the platform publishes ``commands``,
``config`` (desired state), ``ota`` and ``errors`` (why a message was refused).
docs/mqtt.md is the user-facing description.
"""

from __future__ import annotations

import enum

from trellis.ingest.decode import TOPIC_PREFIX

__all__ = ["TopicKind", "device_topic", "shared_subscription"]


class TopicKind(enum.StrEnum):
    """The last level of a device topic."""

    TELEMETRY = "telemetry"
    EVENTS = "events"
    STATE = "state"
    COMMANDS = "commands"
    RESPONSES = "responses"
    CONFIG = "config"
    OTA = "ota"
    ERRORS = "errors"


def device_topic(tenant: str, device: str, kind: TopicKind) -> str:
    """The topic of one kind of message of one device."""
    return f"{TOPIC_PREFIX}{tenant}/{device}/{kind.value}"


def shared_subscription(group: str, kind: TopicKind, tenant: str = "+") -> str:
    """``$share/{group}/trellis/v1/{tenant}/+/{kind}``: N workers split the devices' messages."""
    return f"$share/{group}/{TOPIC_PREFIX}{tenant}/+/{kind.value}"
