"""The simulator: a fleet of pumps and rooms that behaves like real devices."""

from trellis.sim.assets import Pump, Room, SimAsset
from trellis.sim.fleet import Fleet, run_realtime

__all__ = ["Fleet", "Pump", "Room", "SimAsset", "run_realtime"]
