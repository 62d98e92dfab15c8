"""The Brick classes Trellis knows, and subclass questions about them.

The list (``brick_classes.txt``, shipped with the package) is a compact subset of the
Brick ontology: the point, equipment, location and collection classes buildings and
plants commonly use, with their subclass relation. Loading the whole Brick TTL would
cost seconds and megabytes at every start for classes nobody here uses; a class
missing from the list is refused by name with the closest known one suggested, and
the list grows by a line.
"""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from typing import Literal

__all__ = [
    "BRICK_NS",
    "BrickClasses",
    "Kind",
    "SemanticError",
    "UnknownClassError",
    "brick_classes",
]

BRICK_NS = "https://brickschema.org/schema/Brick#"
Kind = Literal["point", "equipment", "location", "collection"]
_ROOTS: dict[str, Kind] = {
    "Point": "point",
    "Equipment": "equipment",
    "Location": "location",
    "Collection": "collection",
}


class SemanticError(ValueError):
    """A semantic model that cannot be stored as given; the message says which node."""


class UnknownClassError(SemanticError):
    """A Brick class name that is not in the shipped list; the message suggests one."""

    def __init__(self, name: str, suggestion: str | None, where: str = "") -> None:
        self.name = name
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown Brick class {name!r}{hint}")


class BrickClasses:
    """The class hierarchy: parents, descendants, and the root kind of every class."""

    def __init__(self, text: str) -> None:
        self.parents: dict[str, set[str]] = {}
        stack: list[tuple[int, str]] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.rstrip()
            if not line or line.lstrip().startswith("#"):
                continue
            name = line.lstrip()
            depth, rest = divmod(len(line) - len(name), 2)
            if rest or depth > len(stack):
                raise ValueError(f"brick class list line {number}: bad indent before {name!r}")
            del stack[depth:]
            parents = self.parents.setdefault(name, set())
            if stack:
                parents.add(stack[-1][1])
            stack.append((depth, name))
        self.children: dict[str, set[str]] = {name: set() for name in self.parents}
        for name, parents in self.parents.items():
            for parent in parents:
                self.children[parent].add(name)
        self._lower = {name.lower(): name for name in self.parents}

    def __contains__(self, name: object) -> bool:
        return name in self.parents

    def __len__(self) -> int:
        return len(self.parents)

    def require(self, name: str, where: str = "") -> str:
        """``name`` when it is a known class, else :class:`UnknownClassError`."""
        if name in self.parents:
            return name
        raise UnknownClassError(name, self.closest(name), where)

    def closest(self, name: str) -> str | None:
        """The known class whose name is nearest ``name`` (case and prefix forgiven)."""
        exact = self._lower.get(name.lower().removeprefix("brick:"))
        if exact is not None:
            return exact
        found = difflib.get_close_matches(name.lower(), list(self._lower), n=1, cutoff=0.6)
        return self._lower[found[0]] if found else None

    @functools.cache  # noqa: B019 - one instance per process; the hierarchy never changes
    def ancestors(self, name: str) -> frozenset[str]:
        """Every superclass of ``name`` (not ``name`` itself)."""
        found: set[str] = set()
        todo = list(self.parents.get(name, ()))
        while todo:
            parent = todo.pop()
            if parent not in found:
                found.add(parent)
                todo.extend(self.parents[parent])
        return frozenset(found)

    @functools.cache  # noqa: B019 - as above
    def descendants(self, name: str) -> frozenset[str]:
        """``name`` and every subclass of it: what "all ``name``" selects."""
        found = {name}
        todo = list(self.children.get(name, ()))
        while todo:
            child = todo.pop()
            if child not in found:
                found.add(child)
                todo.extend(self.children[child])
        return frozenset(found)

    def is_a(self, name: str, ancestor: str) -> bool:
        """Whether ``name`` is ``ancestor`` or one of its subclasses."""
        return name == ancestor or ancestor in self.ancestors(name)

    @functools.cache  # noqa: B019 - as above; asked for every node at every change
    def kind(self, name: str) -> Kind:
        """Point, equipment, location or collection: the root the class descends from."""
        for root, kind in _ROOTS.items():
            if self.is_a(name, root):
                return kind
        raise UnknownClassError(name, self.closest(name))


@functools.cache
def brick_classes() -> BrickClasses:
    """The shipped hierarchy, parsed once."""
    text = resources.files("trellis.semantic").joinpath("brick_classes.txt").read_text()
    return BrickClasses(text)
