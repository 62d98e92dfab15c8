"""The internal bus that carries batches of readings from ingest to their consumers."""

from trellis.bus.base import Bus, SubscriberStats, Subscription
from trellis.bus.memory import InProcessBus, InProcessSubscription

__all__ = ["Bus", "InProcessBus", "InProcessSubscription", "SubscriberStats", "Subscription"]
