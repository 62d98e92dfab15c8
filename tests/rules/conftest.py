"""Fixtures of the rule tests: the private Mosquitto of the MQTT tests, for actions."""

from tests.protocols.mqtt.conftest import broker

__all__ = ["broker"]
