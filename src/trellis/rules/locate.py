"""Where in a JSON (or YAML) text a field is: turn ``$.nodes[3].condition`` into a line.

msgspec names the offending field by its path; people editing a rule file want the
line. :func:`line_of` walks the text with the standard library's decoder for the
leaves and its own loop for objects and arrays, recording the line where each value
starts.
"""

from __future__ import annotations

import json
import re

from trellis.rules.text import is_json, yaml_line_of

__all__ = ["line_of", "with_line"]

_WS = re.compile(r"[ \t\n\r]*")
_PATH = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_decoder = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _walk(text: str, pos: int, path: str, found: dict[str, int]) -> int:
    """Record where the value at ``pos`` (and everything inside it) starts; return its end."""
    pos = _skip(text, pos)
    found[path] = pos
    if text.startswith("{", pos):
        pos = _skip(text, pos + 1)
        if text.startswith("}", pos):
            return pos + 1
        while True:
            key, pos = _decoder.raw_decode(text, _skip(text, pos))
            pos = _skip(text, pos) + 1  # the colon
            pos = _skip(text, _walk(text, pos, f"{path}.{key}", found))
            if text.startswith("}", pos):
                return pos + 1
            pos += 1  # the comma
    if text.startswith("[", pos):
        pos = _skip(text, pos + 1)
        if text.startswith("]", pos):
            return pos + 1
        index = 0
        while True:
            pos = _skip(text, _walk(text, pos, f"{path}[{index}]", found))
            index += 1
            if text.startswith("]", pos):
                return pos + 1
            pos += 1
    _, end = _decoder.raw_decode(text, pos)
    return end


def line_of(text: str, path: str) -> int | None:
    """The 1-based line where the value at ``path`` (``$.a[0].b``) starts, if present.

    For a path that does not exist (a missing required field), the line of the
    deepest existing parent.
    """
    if not is_json(text):
        return yaml_line_of(text, path)
    found: dict[str, int] = {}
    try:
        _walk(text, 0, "$", found)
    except (ValueError, IndexError):
        return None
    while path not in found and path != "$":
        path = path[: max(path.rfind("."), path.rfind("["))]
    return text.count("\n", 0, found[path]) + 1 if path in found else None


def with_line(message: str, text: str) -> str:
    """``message`` with ``(line N)`` after its first ``$.path``, when the text has it."""
    match = _PATH.search(message)
    if match is None:
        return message
    line = line_of(text, match.group(0))
    if line is None:
        return message
    end = match.end() + (message[match.end() : match.end() + 1] == "`")
    return f"{message[:end]} (line {line}){message[end:]}"
