"""Brick models in and out as Turtle, with rdflib.

Read the way Brick's own examples are written: ``rdf:type brick:AHU``,
``brick:hasPart``/``brick:isPartOf`` between locations and between equipment,
``brick:hasLocation``/``brick:isLocationOf`` from equipment to where it is,
``brick:hasPoint``/``brick:isPointOf`` from equipment (or a location) to its points,
``brick:feeds``/``brick:isFedBy`` between equipment, ``rdfs:label`` as the name. A
point names the series that measures it with ``trellis:device`` and
``trellis:metric``; ``trellis:tag`` adds free tags. Node ids are the local names of
the subjects (after ``#`` or the last ``/``).
"""

from __future__ import annotations

import rdflib
from rdflib.namespace import RDF, RDFS

from trellis.semantic.brick import BRICK_NS, brick_classes
from trellis.semantic.model import Node, Relation, SemanticError

__all__ = ["TRELLIS_NS", "export_turtle", "parse_turtle"]

TRELLIS_NS = "https://trellis.dev/ns#"
BRICK = rdflib.Namespace(BRICK_NS)
TRELLIS = rdflib.Namespace(TRELLIS_NS)

# (predicate, inverse?): child → parent edges of the tree, by what the child is.
_POINT_UP = ((BRICK.isPointOf, False), (BRICK.hasPoint, True))
_PART_UP = ((BRICK.isPartOf, False), (BRICK.hasPart, True))
_LOCATION_UP = ((BRICK.hasLocation, False), (BRICK.isLocationOf, True))


def _local(term: rdflib.term.Node) -> str:
    text = str(term)
    return text.rsplit("#", 1)[-1] if "#" in text else text.rstrip("/").rsplit("/", 1)[-1]


def parse_turtle(text: str) -> tuple[list[Node], list[Relation]]:
    """Nodes and relations from a Brick Turtle document.

    Refused with :class:`SemanticError`: a syntax error (with its line), an unknown
    Brick class (naming it and the closest known one), two subjects with one local
    name, a node with two parents, and a relation to something that has no Brick type.
    A cycle is found when the nodes are stored (:func:`~trellis.semantic.model.check_nodes`).
    """
    graph = rdflib.Graph()
    try:
        graph.parse(data=text, format="turtle")
    except Exception as exc:  # rdflib raises its own BadSyntax and plain ValueErrors
        raise SemanticError(f"not valid Turtle: {exc}") from None
    classes = brick_classes()
    typed: dict[rdflib.term.Node, str] = {}
    for subject, rdf_type in graph.subject_objects(RDF.type):
        if not str(rdf_type).startswith(BRICK_NS):
            continue
        name = str(rdf_type)[len(BRICK_NS) :]
        classes.require(name, f"<{subject}> rdf:type")
        current = typed.get(subject)
        # Several Brick types: keep the most specific (a subclass of the other).
        if current is None or classes.is_a(name, current):
            typed[subject] = name
    ids: dict[rdflib.term.Node, str] = {}
    seen: dict[str, rdflib.term.Node] = {}
    for subject in typed:
        local = _local(subject)
        if local in seen:
            raise SemanticError(f"<{seen[local]}> and <{subject}> share the node id {local!r}")
        seen[local] = subject
        ids[subject] = local

    def node_id(term: rdflib.term.Node, via: str) -> str:
        found = ids.get(term)
        if found is None:
            raise SemanticError(f"{via}: <{term}> has no Brick rdf:type")
        return found

    def ups(subject: rdflib.term.Node, edges: tuple[tuple[rdflib.URIRef, bool], ...]) -> set[str]:
        found: set[str] = set()
        for predicate, inverse in edges:
            if inverse:
                targets = graph.subjects(predicate, subject)
            else:
                targets = graph.objects(subject, predicate)
            found.update(node_id(t, f"{ids[subject]} {_local(predicate)}") for t in targets)
        return found

    nodes: list[Node] = []
    relations: set[Relation] = set()
    for subject, brick_class in sorted(typed.items(), key=lambda item: ids[item[0]]):
        me = ids[subject]
        kind = classes.kind(brick_class)
        located = ups(subject, _LOCATION_UP)
        if kind == "point":
            parents = ups(subject, _POINT_UP)
        else:
            parents = ups(subject, _PART_UP)
            if not parents and kind == "equipment" and len(located) == 1:
                parents, located = located, set()
        if len(parents) > 1:
            raise SemanticError(
                f"node {me!r} has {len(parents)} parents ({', '.join(sorted(parents))}); "
                "the asset tree allows one (keep the others as brick:hasLocation or brick:feeds)"
            )
        relations.update(Relation(me, "hasLocation", place) for place in located)
        for target in graph.objects(subject, BRICK.feeds):
            relations.add(Relation(me, "feeds", node_id(target, f"{me} feeds")))
        for source in graph.objects(subject, BRICK.isFedBy):
            relations.add(Relation(node_id(source, f"{me} isFedBy"), "feeds", me))
        device = graph.value(subject, TRELLIS.device)
        metric = graph.value(subject, TRELLIS.metric)
        label = graph.value(subject, RDFS.label)
        nodes.append(
            Node(
                me,
                brick_class,
                name=str(label) if label is not None else "",
                parent=next(iter(parents), None),
                device=str(device) if device is not None else None,
                metric=str(metric) if metric is not None else None,
                tags=sorted(str(tag) for tag in graph.objects(subject, TRELLIS.tag)),
            )
        )
    return nodes, sorted(relations)


def export_turtle(tenant: str, nodes: list[Node], relations: list[Relation]) -> str:
    """The tenant's model as Brick Turtle that :func:`parse_turtle` reads back unchanged."""
    graph = rdflib.Graph()
    site = rdflib.Namespace(f"urn:trellis:{tenant}#")
    graph.bind("brick", BRICK)
    graph.bind("rdfs", RDFS)
    graph.bind("trellis", TRELLIS)
    graph.bind("site", site)
    classes = brick_classes()
    by_id = {node.id: node for node in nodes}
    for node in nodes:
        me = site[node.id]
        graph.add((me, RDF.type, BRICK[node.brick_class]))
        if node.name:
            graph.add((me, RDFS.label, rdflib.Literal(node.name)))
        if node.device is not None and node.metric is not None:
            graph.add((me, TRELLIS.device, rdflib.Literal(node.device)))
            graph.add((me, TRELLIS.metric, rdflib.Literal(node.metric)))
        for tag in node.tags:
            graph.add((me, TRELLIS.tag, rdflib.Literal(tag)))
        if node.parent is None:
            continue
        parent = site[node.parent]
        kind = classes.kind(node.brick_class)
        parent_kind = classes.kind(by_id[node.parent].brick_class)
        if kind == "point":
            graph.add((parent, BRICK.hasPoint, me))
        elif kind == "equipment" and parent_kind == "location":
            graph.add((me, BRICK.hasLocation, parent))
        else:
            graph.add((parent, BRICK.hasPart, me))
    for relation in relations:
        predicate = BRICK.feeds if relation.predicate == "feeds" else BRICK.hasLocation
        graph.add((site[relation.subject], predicate, site[relation.object]))
    return graph.serialize(format="turtle")
