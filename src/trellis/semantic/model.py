"""The semantic model as data: nodes of the asset tree, Brick relations, and the pure checks.

A tenant's model is a forest: sites at the top, then buildings, floors and zones,
then equipment (assets), then points. Every node is typed by a Brick class; a point
is bound to the ``(device, metric)`` series that measures it. The tree edge is
``parent`` (Brick's ``isPartOf`` / ``hasPoint`` / ``hasLocation``); relations the
tree cannot hold (``feeds``, a second ``hasLocation``) are kept as :class:`Relation`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import msgspec

from trellis.semantic.brick import BrickClasses, Kind, SemanticError, brick_classes

__all__ = [
    "RELATIONS",
    "UNPLACED",
    "CycleError",
    "Node",
    "Relation",
    "SemanticError",
    "TreeNode",
    "check_nodes",
    "find_cycle",
]

#: The node devices go to when they are registered without a place.
UNPLACED = "unplaced"
#: Relations kept beside the tree (Brick predicates, without the prefix).
RELATIONS = frozenset({"feeds", "hasLocation"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class CycleError(SemanticError):
    """Nodes that contain themselves; ``cycle`` is the loop, first node repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(
            f"cycle in the asset tree: {' → '.join(cycle)} (each node is part of the next)"
        )


class Node(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """One node of the asset tree; ``device`` and ``metric`` bind a point to its series."""

    id: str
    brick_class: str
    name: str = ""
    parent: str | None = None
    device: str | None = None
    metric: str | None = None
    tags: list[str] = []

    @property
    def kind(self) -> Kind:
        """Point, equipment, location or collection (from the Brick class)."""
        return brick_classes().kind(self.brick_class)


class Relation(msgspec.Struct, frozen=True, array_like=True, order=True):
    """``subject predicate object`` beside the tree, e.g. ``ahu-1 feeds vav-101``."""

    subject: str
    predicate: str
    object: str


class TreeNode(msgspec.Struct):
    """A node with its children, for the tree endpoint and page."""

    id: str
    brick_class: str
    kind: str
    name: str = ""
    device: str | None = None
    metric: str | None = None
    tags: list[str] = []
    children: list[TreeNode] = []


def find_cycle(
    parents: Mapping[str, str | None], starts: Iterable[str] | None = None
) -> list[str] | None:
    """The first loop in the parent map, as ``[a, b, …, a]``, or ``None``.

    Only walks up from ``starts`` when given: a change can only close a loop through
    a node it changed, so checking those is enough (and costs the depth, not the size).
    """
    done: set[str] = set()
    for start in sorted(parents if starts is None else starts):
        path: list[str] = []
        seen: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in done:
            if node in seen:
                return [*path[seen[node] :], node]
            seen[node] = len(path)
            path.append(node)
            node = parents.get(node)
        done.update(path)
    return None


def check_nodes(
    existing: Mapping[str, Node],
    incoming: Iterable[Node],
    relations: Iterable[Relation] = (),
    classes: BrickClasses | None = None,
) -> dict[str, Node]:
    """The tenant's nodes after ``incoming`` replaces or joins ``existing``, checked.

    Refused with :class:`SemanticError`: an id that is not a plain name, an unknown
    Brick class (the closest one suggested), a parent that does not exist, a point
    with children, a half binding (device without metric), two points bound to one
    series, a relation to an unknown node, and a cycle (:class:`CycleError`).
    ``existing`` is taken as valid, so only what the change touches is checked: the
    incoming nodes and the children of replaced ones.
    """
    classes = classes or brick_classes()
    merged = dict(existing)
    incoming = list(incoming)
    incoming_ids = {node.id for node in incoming}
    for node in incoming:
        if not _ID.match(node.id):
            raise SemanticError(
                f"node id {node.id!r} must be letters, digits, '_', '.', ':' or '-' (at most 128)"
            )
        classes.require(node.brick_class, f"node {node.id!r}")
        if (node.device is None) != (node.metric is None):
            raise SemanticError(f"node {node.id!r}: a point binds both a device and a metric")
        if node.device is not None and classes.kind(node.brick_class) != "point":
            raise SemanticError(
                f"node {node.id!r}: only points are bound to a series; "
                f"{node.brick_class} is {classes.kind(node.brick_class)}"
            )
        merged[node.id] = node
    replaced = incoming_ids & existing.keys()
    touched = [
        node for node in merged.values() if node.id in incoming_ids or node.parent in replaced
    ]
    for node in touched:
        if node.parent is not None:
            parent = merged.get(node.parent)
            if parent is None:
                raise SemanticError(f"node {node.id!r}: parent {node.parent!r} does not exist")
            if classes.kind(parent.brick_class) == "point":
                raise SemanticError(
                    f"node {node.id!r}: its parent {parent.id!r} is a point, which has no parts"
                )
    series = {(n.device, n.metric) for n in incoming if n.device is not None}
    if series:
        bound: dict[tuple[str | None, str | None], str] = {}
        for node in merged.values():
            key = (node.device, node.metric)
            if key in series:
                other = bound.setdefault(key, node.id)
                if other != node.id:
                    raise SemanticError(
                        f"nodes {other!r} and {node.id!r} both bind {node.device}/{node.metric}"
                    )
    for relation in relations:
        if relation.predicate not in RELATIONS:
            raise SemanticError(
                f"relation {relation.predicate!r} is not kept; "
                f"known: {', '.join(sorted(RELATIONS))}"
            )
        for end in (relation.subject, relation.object):
            if end not in merged:
                raise SemanticError(f"relation {relation.predicate}: unknown node {end!r}")
    cycle = find_cycle({node.id: node.parent for node in merged.values()}, incoming_ids)
    if cycle is not None:
        # Start the loop at a node of this change: that is the edge to look at.
        changed = [n for n in cycle[:-1] if n in incoming_ids]
        at = cycle.index(changed[0]) if changed else 0
        loop = cycle[:-1]
        raise CycleError([*loop[at:], *loop[:at], loop[at]])
    return merged
