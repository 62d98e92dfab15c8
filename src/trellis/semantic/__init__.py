"""The semantic model: a Brick-typed asset tree per tenant, points bound to series.

Sites, buildings, floors and zones, then equipment, then points; each node typed by a
Brick class from the shipped hierarchy (:mod:`trellis.semantic.brick`). Points are
found by class (subclasses included) and by location, which is what rule selectors
and KPIs use instead of device ids. Brick Turtle files go in and out with rdflib.
"""

from trellis.semantic.brick import BrickClasses, UnknownClassError, brick_classes
from trellis.semantic.model import (
    UNPLACED,
    CycleError,
    Node,
    Relation,
    SemanticError,
    TreeNode,
    check_nodes,
    find_cycle,
)
from trellis.semantic.store import SemanticModel
from trellis.semantic.turtle import export_turtle, parse_turtle

__all__ = [
    "UNPLACED",
    "BrickClasses",
    "CycleError",
    "Node",
    "Relation",
    "SemanticError",
    "SemanticModel",
    "TreeNode",
    "UnknownClassError",
    "brick_classes",
    "check_nodes",
    "export_turtle",
    "find_cycle",
    "parse_turtle",
]
