"""A tamper-evident audit log: JSON lines, each entry carrying the hash of the previous one.

Editing, deleting or reordering any entry breaks the chain at that entry, and
:func:`verify` names it. The file is its own JSON-lines export.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis.core.clock import now_ms

__all__ = ["GENESIS", "AuditLog", "Broken", "verify"]

GENESIS = "0" * 64


def _hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Broken:
    """The first entry that does not belong to the chain, and why."""

    line: int
    reason: str


class AuditLog:
    """Appends entries to ``path``; one writer per file (the serving process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq, self._prev = 0, GENESIS
        last = _last_line(path)
        if last is not None:
            entry = json.loads(last)
            self._seq, self._prev = int(entry["seq"]), str(entry["hash"])

    def append(self, **fields: Any) -> dict[str, Any]:
        """Record one event (who, what, from where, decision); returns the stored entry."""
        with self._lock:
            entry = {"seq": self._seq + 1, "ts_ms": now_ms(), **fields, "prev": self._prev}
            entry["hash"] = _hash(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            self._seq, self._prev = entry["seq"], entry["hash"]
            return entry

    def entries(self, limit: int = 100, *, tenant: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (of ``tenant``, when given), newest first."""
        if not self.path.exists():
            return []
        found: list[dict[str, Any]] = []
        for line in reversed(self.path.read_text(encoding="utf-8").splitlines()):
            entry = json.loads(line)
            if tenant is None or entry.get("tenant") == tenant:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found


def _last_line(path: Path) -> str | None:
    if not path.exists():
        return None
    last = None
    for line in _lines(path):
        last = line
    return last


def _lines(path: Path) -> Iterator[str]:
    with path.open("rb") as source:
        for raw in source:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")


def verify(path: Path) -> tuple[int, Broken | None]:
    """(entries checked, the first broken entry or ``None``); line numbers start at 1."""
    prev, count = GENESIS, 0
    for number, line in enumerate(_lines(path), start=1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            return count, Broken(number, "not a JSON object (edited or truncated)")
        if entry.get("seq") != number:
            return count, Broken(
                number,
                f"sequence {entry.get('seq')!r}, expected {number} (entry deleted or reordered)",
            )
        if entry.get("prev") != prev:
            return count, Broken(
                number, "does not chain to the previous entry (deleted, inserted or reordered)"
            )
        if entry.get("hash") != _hash(entry):
            return count, Broken(number, "content does not match its hash (edited)")
        prev, count = entry["hash"], count + 1
    return count, None
