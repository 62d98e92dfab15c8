"""Rule and flow files as text: JSON or YAML in, stable diff-friendly JSON or YAML out.

A file whose first character is ``{`` or ``[`` is JSON; anything else is YAML. YAML is
read with YAML 1.2 booleans (only ``true``/``false``): YAML 1.1 would read an action's
``on: [raise]`` key as the boolean *true*, and ``no`` as false. Output is sorted by
key, indented by two, block style, one trailing newline, so a change to one field is
a change to one line in git.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml

__all__ = ["Format", "dump", "is_json", "load", "yaml_line_of"]

Format = Literal["json", "yaml"]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _Dumper(yaml.SafeDumper):
    """Block style, and lists indented under their key (what people write by hand)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _list(dumper: yaml.SafeDumper, data: list[Any] | tuple[Any, ...]) -> yaml.Node:
    # A short list of scalars (an edge, a test reading, selector models) stays on one
    # line, like [pump-1, 3.0, 95.0]; anything nested is a block.
    scalars = all(isinstance(item, str | int | float | bool) or item is None for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=scalars)


_Dumper.add_representer(list, _list)
_Dumper.add_representer(tuple, _list)


def is_json(text: str) -> bool:
    """Whether ``text`` is meant as JSON (starts with ``{`` or ``[``)."""
    return text.lstrip()[:1] in ("{", "[")


def load(text: str, what: str) -> Any:
    """The data in ``text`` (JSON or YAML); ``ValueError`` says where it is malformed."""
    if is_json(text):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"invalid {what}: JSON is malformed at line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}"
            ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"invalid {what}: YAML is malformed{at}: {problem}") from None


def dump(data: Any, fmt: Format) -> str:
    """Stable text: sorted keys, two-space indent, one trailing newline."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    options: dict[str, Any] = {
        "Dumper": _Dumper,
        "sort_keys": True,
        "default_flow_style": False,
        "width": 100,
        "indent": 2,
    }
    text: str = yaml.dump(data, allow_unicode=True, **options)
    # PyYAML writes some characters raw that its reader takes for line breaks (NEL,
    # U+0085, found by the round-trip property test); escape everything then.
    if yaml.load(text, Loader=_Loader) != _plain(data):  # noqa: S506 (a SafeLoader)
        text = yaml.dump(data, allow_unicode=False, **options)
    return text


def _plain(data: Any) -> Any:
    """``data`` as YAML reads it back: tuples are lists."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    return data


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def yaml_line_of(text: str, path: str) -> int | None:
    """The 1-based line of the value at ``path`` (``$.a[0].b``) in YAML ``text``, or of
    its deepest existing parent; ``None`` when the text does not parse."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    for key, index in _STEP.findall(path.removeprefix("$")):
        child = None
        if key and isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == key), None)
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            child = node.value[int(index)]
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1
