"""Per-device sequence numbers: which messages never arrived, which arrived twice.

Devices number their messages (``seq``); storage is idempotent, so a QoS 1 redelivery
is stored once whatever happens here. This tracker makes loss *visible*: a number
skipped is a gap until it turns up late (MQTT may reorder across reconnects), a
number seen again is a repeat. A device that starts again from 0 or 1 (a reboot)
opens a new run instead of counting as thousands of repeats.

The counts are per gateway process since it started: with N workers on one shared
subscription each sees part of every device's numbers, so read gaps from one worker
only when it is the only one (the exact cross-worker answer is in storage: the
``seq`` of every stored reading).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

__all__ = ["DeviceSequence", "SequenceTracker"]

#: Missing numbers remembered per device; beyond it they count as gaps for good.
_MAX_MISSING = 10_000


class DeviceSequence(msgspec.Struct, frozen=True):
    """What one device's sequence numbers say about delivery."""

    tenant: str
    device: str
    last_seq: int
    messages: int
    gaps: int
    repeats: int
    restarts: int


@dataclass
class _State:
    high: int
    messages: int = 1
    repeats: int = 0
    restarts: int = 0
    lost_for_good: int = 0
    missing: set[int] = field(default_factory=set)


class SequenceTracker:
    """Gap and repeat counts per (tenant, device); call :meth:`observe` per message."""

    def __init__(self) -> None:
        self._devices: dict[tuple[str, str], _State] = {}

    def observe(self, tenant: str, device: str, seq: int) -> None:
        """Record that the message numbered ``seq`` was taken."""
        state = self._devices.get((tenant, device))
        if state is None:
            self._devices[tenant, device] = _State(high=seq)
            return
        state.messages += 1
        if seq > state.high:
            skipped = seq - state.high - 1
            room = max(0, _MAX_MISSING - len(state.missing))
            state.missing.update(range(state.high + 1, state.high + 1 + min(skipped, room)))
            state.lost_for_good += max(0, skipped - room)
            state.high = seq
        elif seq in state.missing:
            state.missing.discard(seq)
        elif seq <= 1 < state.high:
            state.restarts += 1
            state.high = seq
            state.lost_for_good += len(state.missing)
            state.missing.clear()
        else:
            state.repeats += 1

    def get(self, tenant: str, device: str) -> DeviceSequence | None:
        """The counts of one device, or ``None`` before its first numbered message."""
        state = self._devices.get((tenant, device))
        if state is None:
            return None
        return DeviceSequence(
            tenant,
            device,
            state.high,
            state.messages,
            len(state.missing) + state.lost_for_good,
            state.repeats,
            state.restarts,
        )

    def all(self) -> list[DeviceSequence]:
        """Every device's counts, ordered by tenant and device."""
        found = (self.get(tenant, device) for tenant, device in sorted(self._devices))
        return [entry for entry in found if entry is not None]
