"""The audit log's hash chain: any edit, deletion or reorder is found and named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trellis.auth.audit import AuditLog, verify
from trellis.cli import app


def _log(tmp_path: Path, n: int = 5) -> Path:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append(
            principal=f"u{i}", action="devices.put_device", decision="allow", client="127.0.0.1"
        )
    return log.path


def test_intact_log_verifies_and_reopening_continues_the_chain(tmp_path: Path) -> None:
    """A reopened log appends after the last entry and the whole chain still verifies."""
    path = _log(tmp_path, 3)
    AuditLog(path).append(principal="later", action="x", decision="deny")
    assert verify(path) == (4, None)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=6))
def test_one_changed_byte_names_its_entry(
    tmp_path_factory: pytest.TempPathFactory, position: int, bit: int
) -> None:
    """Flipping any one bit of any entry (newlines aside) makes verify name exactly that line."""
    path = _log(tmp_path_factory.mktemp("a"))
    data = bytearray(path.read_bytes())
    index = position % len(data)
    if data[index] == ord("\n") or data[index] ^ (1 << bit) == ord("\n"):
        return
    data[index] ^= 1 << bit
    path.write_bytes(bytes(data))
    line = data[:index].count(b"\n") + 1
    count, broken = verify(path)
    assert broken is not None
    assert broken.line == line
    assert count == line - 1


def test_deleted_and_reordered_entries_are_found(tmp_path: Path) -> None:
    """Removing or swapping lines breaks the chain at the first moved line."""
    path = _log(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2] + lines[3:]))
    assert verify(path)[1].line == 3  # type: ignore[union-attr]
    path.write_text("".join([lines[1], lines[0], *lines[2:]]))
    assert verify(path)[1].line == 1  # type: ignore[union-attr]


def test_recomputed_hash_still_breaks_the_chain(tmp_path: Path) -> None:
    """An attacker who edits an entry and fixes its own hash is caught at the next entry."""
    from trellis.auth.audit import _hash

    path = _log(tmp_path)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["decision"] = "deny"
    entry["hash"] = _hash(entry)
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    broken = verify(path)[1]
    assert broken is not None
    assert broken.line == 3


def test_cli_verify_names_the_bad_entry_and_export_refuses(tmp_path: Path) -> None:
    """`trellis audit verify` exits 1 naming the line; export prints JSON lines only when intact."""
    path = _log(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "export", "--file", str(path)])
    assert ok.exit_code == 0
    assert [json.loads(x)["seq"] for x in ok.stdout.splitlines()] == [
        1,
        2,
        3,
        4,
        5,
    ]
    data = path.read_bytes().replace(b'"u3"', b'"u9"')
    path.write_bytes(data)
    bad = runner.invoke(app, ["audit", "verify", "--file", str(path)])
    assert bad.exit_code == 1
    assert "line 4" in bad.output
    assert runner.invoke(app, ["audit", "export", "--file", str(path)]).exit_code == 1


def test_an_open_log_follows_a_file_moved_away_and_another_writer(tmp_path: Path) -> None:
    """The log keeps its file open between appends; when the file is moved away (rotated by
    an operator) the next entry starts a new file, and entries of another writer in
    between are continued, not overwritten."""
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(principal="a", action="x", decision="allow")
    AuditLog(log.path).append(principal="other", action="y", decision="allow")
    log.append(principal="a", action="z", decision="allow")
    assert verify(log.path) == (3, None)
    log.path.rename(tmp_path / "audit.1.jsonl")
    log.append(principal="a", action="after", decision="allow")
    assert verify(tmp_path / "audit.1.jsonl") == (3, None)
    assert verify(log.path) == (1, None)
    assert json.loads(log.path.read_text())["action"] == "after"
    log.close()
