"""The simulator: physics-based, seeded, vectorised fleets with ground truth."""

from trellis.sim.assets import Pump, Room, SimAsset
from trellis.sim.engine import FaultPlan, Frame, Plan, Simulation, SitePlan
from trellis.sim.faults import FAULTS, FaultRecord
from trellis.sim.fleet import Fleet, run_realtime

__all__ = [
    "FAULTS",
    "FaultPlan",
    "FaultRecord",
    "Fleet",
    "Frame",
    "Plan",
    "Pump",
    "Room",
    "SimAsset",
    "Simulation",
    "SitePlan",
    "run_realtime",
]
