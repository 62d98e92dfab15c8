"""The semantic model in the metadata database, cached in memory for queries and rules.

Writes go to the database first (one transaction per change), then replace the
tenant's cached snapshot, then tell the listeners (the rule engine re-resolves its
selectors), so a new device's points join the rules that select their class at once.
Reads never touch the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import ConflictError, NotFoundError
from trellis.core.types import Device
from trellis.devices.models import DeviceModel
from trellis.semantic.brick import brick_classes
from trellis.semantic.model import (
    UNPLACED,
    Node,
    Relation,
    SemanticError,
    TreeNode,
    check_nodes,
)
from trellis.store.metadata import semantic_nodes, semantic_relations

__all__ = ["SemanticModel"]

log = logging.getLogger(__name__)
Listener = Callable[[str], None]
Series = tuple[str, str]  # device, metric


@dataclass(frozen=True)
class _Snapshot:
    """One tenant's model, immutable: readers hold it while a writer builds the next."""

    nodes: dict[str, Node]
    relations: frozenset[Relation]
    children: dict[str | None, list[str]] = field(default_factory=dict)
    located: dict[str, str] = field(default_factory=dict)
    series: dict[Series, str] = field(default_factory=dict)
    #: device -> its points, so an alert's scopes need no scan of every series.
    points_of: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, nodes: dict[str, Node], relations: Iterable[Relation]) -> _Snapshot:
        children: dict[str | None, list[str]] = {}
        series: dict[Series, str] = {}
        points_of: dict[str, list[str]] = {}
        for node in sorted(nodes.values(), key=lambda n: n.id):
            children.setdefault(node.parent, []).append(node.id)
            if node.device is not None and node.metric is not None:
                series[(node.device, node.metric)] = node.id
                points_of.setdefault(node.device, []).append(node.id)
        kept = frozenset(relations)
        located = {r.subject: r.object for r in kept if r.predicate == "hasLocation"}
        return cls(nodes, kept, children, located, series, points_of)

    def containers(self, node_id: str) -> set[str]:
        """Every node ``node_id`` is inside: its parents up the tree, and the locations
        it (or any of them) has by ``hasLocation``."""
        found: set[str] = set()
        todo = [node_id]
        located = self.located
        while todo:
            current = todo.pop()
            node = self.nodes.get(current)
            for up in (node.parent if node else None, located.get(current)):
                if up is not None and up not in found:
                    found.add(up)
                    todo.append(up)
        return found

    def tags(self, node_id: str) -> set[str]:
        """The node's tags and those of every node it is inside."""
        found: set[str] = set()
        for member in {node_id} | self.containers(node_id):
            node = self.nodes.get(member)
            if node is not None:
                found.update(node.tags)
        return found


class SemanticModel:
    """Every tenant's asset tree: import, query by class and location, place devices."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._tenants: dict[str, _Snapshot] = {}
        self._resolved: dict[tuple[object, ...], frozenset[Series]] = {}
        self.listeners: list[Listener] = []
        nodes: dict[str, dict[str, Node]] = {}
        relations: dict[str, list[Relation]] = {}
        with engine.connect() as connection:
            for row in connection.execute(sa.select(semantic_nodes)).mappings():
                nodes.setdefault(row["tenant"], {})[row["id"]] = _node(row)
            for rel in connection.execute(sa.select(semantic_relations)):
                relations.setdefault(rel.tenant, []).append(
                    Relation(rel.subject, rel.predicate, rel.object)
                )
        for tenant in nodes.keys() | relations.keys():
            self._tenants[tenant] = _Snapshot.of(nodes.get(tenant, {}), relations.get(tenant, []))

    # -- reading --------------------------------------------------------------------

    def _snapshot(self, tenant: str) -> _Snapshot:
        return self._tenants.get(tenant) or _Snapshot.of({}, ())

    def nodes(self, tenant: str) -> list[Node]:
        """The tenant's nodes, ordered by id."""
        return sorted(self._snapshot(tenant).nodes.values(), key=lambda n: n.id)

    def relations(self, tenant: str) -> list[Relation]:
        """The tenant's relations beside the tree, ordered."""
        return sorted(self._snapshot(tenant).relations)

    def get(self, tenant: str, node_id: str) -> Node:
        """One node, or :class:`NotFoundError`."""
        node = self._snapshot(tenant).nodes.get(node_id)
        if node is None:
            raise NotFoundError("semantic node", node_id)
        return node

    def tree(self, tenant: str, root: str | None = None) -> list[TreeNode]:
        """The forest (or the subtree under ``root``), children ordered by id."""
        snapshot = self._snapshot(tenant)
        if root is not None:
            self.get(tenant, root)

        def build(node_id: str) -> TreeNode:
            node = snapshot.nodes[node_id]
            return TreeNode(
                id=node.id,
                brick_class=node.brick_class,
                kind=node.kind,
                name=node.name,
                device=node.device,
                metric=node.metric,
                tags=list(node.tags),
                children=[build(child) for child in snapshot.children.get(node_id, [])],
            )

        tops = [root] if root is not None else snapshot.children.get(None, [])
        return [build(node_id) for node_id in tops]

    def points(
        self,
        tenant: str,
        brick_class: str | None = None,
        within: str | None = None,
        tags: Sequence[str] = (),
    ) -> list[Node]:
        """Points of ``brick_class`` or a subclass, inside ``within``, carrying ``tags``
        (their own or inherited from what contains them); unknown class or node refused."""
        classes = brick_classes()
        wanted = (
            classes.descendants(classes.require(brick_class, "class"))
            if brick_class is not None
            else None
        )
        snapshot = self._snapshot(tenant)
        if within is not None and within not in snapshot.nodes:
            raise NotFoundError("semantic node", within)
        found = []
        for node in snapshot.nodes.values():
            if node.kind != "point" or (wanted is not None and node.brick_class not in wanted):
                continue
            if within is not None and within not in snapshot.containers(node.id):
                continue
            if tags and not set(tags) <= snapshot.tags(node.id):
                continue
            found.append(node)
        return sorted(found, key=lambda n: n.id)

    def resolve(
        self,
        tenant: str,
        classes: Sequence[str],
        within: Sequence[str],
        tags: Sequence[str] = (),
    ) -> frozenset[Series]:
        """The ``(device, metric)`` series a rule selector picks: bound points of any of
        ``classes`` (all when empty) inside any of ``within`` (anywhere when empty) with
        every tag. Cached until the tenant's model changes."""
        key = (tenant, tuple(classes), tuple(within), tuple(tags))
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        snapshot = self._snapshot(tenant)
        found: set[Series] = set()
        wanted: list[str | None] = list(classes) or [None]
        places: list[str | None] = list(within) or [None]
        for brick_class in wanted:
            for place in places:
                if place is not None and place not in snapshot.nodes:
                    continue  # a place deleted after the rule was saved selects nothing
                for node in self.points(tenant, brick_class, place, tags):
                    if node.device is not None and node.metric is not None:
                        found.add((node.device, node.metric))
        result = frozenset(found)
        self._resolved[key] = result
        return result

    def series_tags(self, tenant: str, device: str, metric: str) -> set[str]:
        """The tags of the point bound to a series, inherited ones included."""
        snapshot = self._snapshot(tenant)
        node_id = snapshot.series.get((device, metric))
        return snapshot.tags(node_id) if node_id is not None else set()

    def ancestors(self, tenant: str, device: str) -> list[str]:
        """The nodes above a device's points, nearest first: equipment, then the places
        that hold it (by the tree, then by ``hasLocation``). An alert of the device is
        visible at each of them."""
        snapshot = self._snapshot(tenant)
        frontier = list(snapshot.points_of.get(device, ()))
        seen = set(frontier)
        chain: list[str] = []
        while frontier:
            upper: list[str] = []
            for current in frontier:
                node = snapshot.nodes.get(current)
                for up in (node.parent if node else None, snapshot.located.get(current)):
                    if up is not None and up not in seen:
                        seen.add(up)
                        chain.append(up)
                        upper.append(up)
            frontier = upper
        return chain

    # -- writing --------------------------------------------------------------------

    def put(
        self,
        tenant: str,
        nodes: Sequence[Node],
        relations: Sequence[Relation] = (),
        *,
        replace: bool = False,
    ) -> int:
        """Add or replace nodes (and relations) in one transaction; returns how many nodes.

        With ``replace`` the tenant's model becomes exactly ``nodes`` and ``relations``
        (an import of a whole file). Everything is checked first (:func:`check_nodes`):
        nothing is written when any node is refused.
        """
        with self._lock:
            snapshot = self._snapshot(tenant)
            base = {} if replace else snapshot.nodes
            merged = check_nodes(base, nodes, relations)
            kept = set() if replace else set(snapshot.relations)
            all_relations = kept | set(relations)
            now = now_ms()
            with self._engine.begin() as connection:
                if replace:
                    connection.execute(
                        semantic_nodes.delete().where(semantic_nodes.c.tenant == tenant)
                    )
                    connection.execute(
                        semantic_relations.delete().where(semantic_relations.c.tenant == tenant)
                    )
                elif nodes:
                    connection.execute(
                        semantic_nodes.delete().where(
                            semantic_nodes.c.tenant == tenant,
                            semantic_nodes.c.id.in_([n.id for n in nodes]),
                        )
                    )
                if nodes:
                    connection.execute(
                        semantic_nodes.insert(),
                        [{"tenant": tenant, "created_ms": now, **_row(n)} for n in nodes],
                    )
                new_relations = sorted(all_relations - kept)
                if new_relations:
                    connection.execute(
                        semantic_relations.insert(),
                        [
                            {
                                "tenant": tenant,
                                "subject": r.subject,
                                "predicate": r.predicate,
                                "object": r.object,
                            }
                            for r in new_relations
                        ],
                    )
            self._tenants[tenant] = _Snapshot.of(merged, all_relations)
            self._resolved = {k: v for k, v in self._resolved.items() if k[0] != tenant}
        self._changed(tenant)
        return len(nodes)

    def delete(self, tenant: str, node_id: str) -> None:
        """Remove a node with no children (and its relations); :class:`ConflictError` if
        it has some: move or delete them first, so nothing is orphaned by accident."""
        with self._lock:
            snapshot = self._snapshot(tenant)
            self.get(tenant, node_id)
            children = snapshot.children.get(node_id, [])
            if children:
                raise ConflictError(
                    f"semantic node {node_id!r} has children ({', '.join(children[:5])}); "
                    "move or delete them first"
                )
            with self._engine.begin() as connection:
                connection.execute(
                    semantic_nodes.delete().where(
                        semantic_nodes.c.tenant == tenant, semantic_nodes.c.id == node_id
                    )
                )
                connection.execute(
                    semantic_relations.delete().where(
                        semantic_relations.c.tenant == tenant,
                        sa.or_(
                            semantic_relations.c.subject == node_id,
                            semantic_relations.c.object == node_id,
                        ),
                    )
                )
            nodes = {k: v for k, v in snapshot.nodes.items() if k != node_id}
            relations = {r for r in snapshot.relations if node_id not in (r.subject, r.object)}
            self._tenants[tenant] = _Snapshot.of(nodes, relations)
            self._resolved = {k: v for k, v in self._resolved.items() if k[0] != tenant}
        self._changed(tenant)

    def place_device(self, device: Device, model: DeviceModel) -> list[Node]:
        """Create the points a device's model declares Brick classes for; returns the new ones.

        The points go under an equipment node named after the device (of the model's
        Brick class), placed at ``attributes["location"]``, else at the node named
        like the device's site, else under :data:`UNPLACED`. Series already bound
        (by an imported Brick file, or an earlier registration) are left alone, so
        registering the same device again changes nothing.
        """
        typed = {name: spec for name, spec in model.metrics.items() if spec.brick_class}
        if not typed:
            return []
        snapshot = self._snapshot(device.tenant)
        missing = {
            name: spec for name, spec in typed.items() if (device.id, name) not in snapshot.series
        }
        if not missing:
            return []
        new: list[Node] = []
        equipment = snapshot.nodes.get(device.id)
        if equipment is None or equipment.kind == "point":
            place = _place(device, snapshot)
            if place == UNPLACED and UNPLACED not in snapshot.nodes:
                new.append(Node(UNPLACED, "Collection", name="Unplaced devices"))
            equipment = Node(
                device.id,
                model.brick_class or "Equipment",
                name=device.name or device.id,
                parent=place,
            )
            new.append(equipment)
        for name, spec in sorted(missing.items()):
            point_id = f"{equipment.id}.{name}"
            assert spec.brick_class is not None
            if point_id in snapshot.nodes:
                raise SemanticError(
                    f"device {device.id} is registered, but its points were not placed: "
                    f"node {point_id!r} exists and is not bound to {name}"
                )
            new.append(
                Node(
                    point_id,
                    spec.brick_class,
                    name=spec.description or name,
                    parent=equipment.id,
                    device=device.id,
                    metric=name,
                )
            )
        self.put(device.tenant, new)
        return new

    def _changed(self, tenant: str) -> None:
        for listener in list(self.listeners):
            listener(tenant)


def _place(device: Device, snapshot: _Snapshot) -> str:
    location = device.attributes.get("location")
    if isinstance(location, str) and location:
        if location in snapshot.nodes and snapshot.nodes[location].kind != "point":
            return location
        # The device is registered already; it waits in "unplaced" until moved.
        log.warning(
            "device %s: location %r is not a place in the semantic model; placed under %r",
            device.id,
            location,
            UNPLACED,
        )
    if device.site and device.site in snapshot.nodes:
        return device.site
    return UNPLACED


def _row(node: Node) -> dict[str, object]:
    return {
        "id": node.id,
        "brick_class": node.brick_class,
        "name": node.name,
        "parent": node.parent,
        "device": node.device,
        "metric": node.metric,
        "tags": list(node.tags),
    }


def _node(row: sa.RowMapping) -> Node:
    return msgspec.convert(
        {
            "id": row["id"],
            "brick_class": row["brick_class"],
            "name": row["name"],
            "parent": row["parent"],
            "device": row["device"],
            "metric": row["metric"],
            "tags": row["tags"],
        },
        Node,
    )
