"""Lineage: walking derived data back to source messages, and OpenLineage run events."""

from trellis.lineage.graph import (
    KINDS,
    LineageEdge,
    LineageGraph,
    LineageNode,
    LineageWalker,
    reading_id,
)
from trellis.lineage.openlineage import Dataset, LineageEmitter, LineageRun, run_event

__all__ = [
    "KINDS",
    "Dataset",
    "LineageEdge",
    "LineageEmitter",
    "LineageGraph",
    "LineageNode",
    "LineageRun",
    "LineageWalker",
    "reading_id",
    "run_event",
]
