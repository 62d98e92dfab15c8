"""Signed audit checkpoints: truncation of the tail and a chain rewritten from scratch are
found; the platform key is generated once with mode 0600; CLI changes are audited."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from tests.serving import serve
from trellis.api.app import create_app
from trellis.auth.audit import (
    CHECKPOINT,
    AuditLog,
    _hash,
    _line,
    audit_path,
    check,
    checkpoint_path,
)
from trellis.auth.keys import default_key_path, platform_key
from trellis.cli import app
from trellis.core.config import load_settings
from trellis.core.errors import ConfigError

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _signed_log(tmp_path: Path, n: int = 25, every: int = 10) -> Path:
    """``n`` entries with a checkpoint every ``every`` and one at close."""
    log = AuditLog(tmp_path / "audit.jsonl", KEY, every)
    for i in range(n):
        log.append(principal=f"u{i}", action="devices.put_device", decision="allow", tenant="t")
    log.close()
    return log.path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_intact_signed_log_verifies_with_its_checkpoints(tmp_path: Path) -> None:
    """25 entries, every 10: checkpoints after 10, 20 (lines 11, 22) and at close (line 28)."""
    path = _signed_log(tmp_path)
    found = check(path, KEY.public_key(), require_checkpoint_file=True)
    assert found.ok, found.broken
    assert (found.entries, found.checkpoints, found.unprotected) == (28, 3, 0)
    kinds = [json.loads(line).get("kind") for line in _lines(path)]
    assert [i + 1 for i, k in enumerate(kinds) if k == CHECKPOINT] == [11, 22, 28]
    assert json.loads(checkpoint_path(path).read_text())["seq"] == 28
    AuditLog(path, KEY, 10).close()  # nothing new: no empty checkpoint
    assert len(_lines(path)) == 28


def test_one_changed_byte_is_named(tmp_path: Path) -> None:
    """A digit changed inside entry 5 names line 5."""
    path = _signed_log(tmp_path)
    lines = _lines(path)
    lines[4] = lines[4].replace('"u4"', '"u7"')
    path.write_text("".join(lines))
    broken = check(path, KEY.public_key()).broken
    assert broken is not None
    assert (broken.line, broken.reason) == (5, "content does not match its hash (edited)")


def test_one_deleted_entry_is_named(tmp_path: Path) -> None:
    """Deleting entry 7 breaks the chain at line 7."""
    path = _signed_log(tmp_path)
    lines = _lines(path)
    path.write_text("".join(lines[:6] + lines[7:]))
    broken = check(path, KEY.public_key()).broken
    assert broken is not None
    assert broken.line == 7
    assert "deleted or reordered" in broken.reason


def test_two_swapped_entries_are_named(tmp_path: Path) -> None:
    """Swapping entries 3 and 4 is found at line 3."""
    path = _signed_log(tmp_path)
    lines = _lines(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_text("".join(lines))
    broken = check(path, KEY.public_key()).broken
    assert broken is not None
    assert broken.line == 3


def test_truncated_tail_names_the_missing_range(tmp_path: Path) -> None:
    """Cutting the last 9 lines (checkpoints included) leaves a chain that verifies by itself;
    the checkpoint kept beside the log names entries 20..28 as missing."""
    path = _signed_log(tmp_path)
    path.write_text("".join(_lines(path)[:19]))
    broken = check(path, KEY.public_key()).broken
    assert broken is not None
    assert broken.line == 20
    assert "entries 20..28 are missing" in broken.reason
    assert "tail truncated" in broken.reason
    # The checkpoint file removed as well: the live log requires it, so it is still found.
    checkpoint_path(path).unlink()
    broken = check(path, KEY.public_key(), require_checkpoint_file=True).broken
    assert broken is not None
    assert broken.line == 12
    assert "may have been cut off" in broken.reason


def test_rewritten_chain_fails_at_the_first_checkpoint(tmp_path: Path) -> None:
    """An entry deleted and every later seq, prev and hash recomputed (checkpoint file too):
    the chain is consistent, but the signatures cannot be redone without the key."""
    path = _signed_log(tmp_path)
    entries = [json.loads(line) for line in _lines(path)]
    del entries[4]
    prev = "0" * 64
    for seq, entry in enumerate(entries, start=1):
        entry["seq"], entry["prev"] = seq, prev
        if entry.get("kind") == CHECKPOINT:
            entry["entries"] = seq - 1
        entry["hash"] = prev = _hash(entry)
    path.write_text("".join(_line(e) + "\n" for e in entries))
    checkpoint_path(path).write_text(_line(entries[-1]) + "\n")
    broken = check(path, KEY.public_key()).broken
    assert broken is not None
    assert broken.line == 10
    assert "signature does not verify" in broken.reason
    # Without the public key only the chain is checked, and a rewrite is not visible.
    assert check(path).ok


def test_checkpoints_of_another_key_are_refused(tmp_path: Path) -> None:
    """A log signed by some other key does not verify against the platform key."""
    path = _signed_log(tmp_path)
    other = Ed25519PrivateKey.generate().public_key()
    broken = check(path, other).broken
    assert broken is not None
    assert "not the platform key" in broken.reason


def test_two_writers_share_one_chain(tmp_path: Path) -> None:
    """The server's log and a CLI command's log appending in turn keep one valid chain."""
    path = tmp_path / "audit.jsonl"
    server, cli = AuditLog(path, KEY, 4), AuditLog(path, KEY, 4)
    for i in range(6):
        server.append(action=f"api.{i}", decision="allow")
        cli.append(action=f"cli.{i}", decision="allow")
    server.close()
    found = check(path, KEY.public_key(), require_checkpoint_file=True)
    assert found.ok, found.broken
    assert found.checkpoints >= 3
    with pytest.raises(ValueError, match="reserved"):
        server.append(kind="checkpoint")


def test_platform_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """First start writes the key with 0600; the next loads the same key; a key readable by
    others, a malformed key and a missing configured file are refused with the reason."""
    settings = load_settings(data_dir=tmp_path / "d")
    key = platform_key(settings)
    path = default_key_path(settings.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    same = platform_key(settings).public_key().public_bytes_raw()
    assert same == key.public_key().public_bytes_raw()
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        platform_key(settings)
    seed = base64.b64encode(bytes(range(32))).decode()
    from_env = load_settings(data_dir=tmp_path / "e", trust={"platform_key": seed})
    assert platform_key(from_env).public_key().public_bytes_raw() == (
        KEY.public_key().public_bytes_raw()
    )
    assert not default_key_path(tmp_path / "e").exists()
    for bad in ("not a key", base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigError, match=r"trust\.platform_key"):
            platform_key(load_settings(data_dir=tmp_path / "f", trust={"platform_key": bad}))
    missing = load_settings(data_dir=tmp_path / "g", trust={"platform_key_file": tmp_path / "x"})
    with pytest.raises(ConfigError, match="does not exist"):
        platform_key(missing)


def test_cli_changes_are_audited_and_verify_names_a_truncation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`users add` and `users token` leave signed entries (never the token); `audit verify`
    passes, then names the missing range after a truncation; an auditor verifies an exported
    copy with the published public key."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path / "d"))
    runner = CliRunner()
    assert runner.invoke(app, ["users", "add", "bob", "--role", "operator"]).exit_code == 0
    token = runner.invoke(app, ["users", "token", "bob", "--scope", "read"]).stdout.strip()
    path = audit_path(load_settings())
    entries = [json.loads(line) for line in _lines(path)]
    actions = [e["action"] for e in entries if e.get("kind") != CHECKPOINT]
    assert actions == ["cli.users.add", "cli.users.token"]
    assert entries[0]["via"] == "cli"
    assert entries[0]["principal"].startswith(("os:", "uid-"))
    assert token.split(".", 1)[1] not in path.read_text()
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "2 checkpoints signed" in ok.output
    exported = runner.invoke(app, ["audit", "export"])
    assert exported.exit_code == 0
    copy = tmp_path / "copy.jsonl"
    copy.write_text(exported.stdout)
    public = tmp_path / "platform.pub"
    public.write_text(runner.invoke(app, ["audit", "public-key"]).stdout)
    assert "PUBLIC KEY" in public.read_text()
    elsewhere = runner.invoke(app, ["audit", "verify", "--file", str(copy), "--key", str(public)])
    assert elsewhere.exit_code == 0, elsewhere.output
    path.write_text("".join(_lines(path)[:2]))
    bad = runner.invoke(app, ["audit", "verify"], env={"COLUMNS": "200"})
    assert bad.exit_code == 1
    assert "entries 3..4 are missing" in bad.output


def test_server_shutdown_writes_a_checkpoint(tmp_path: Path) -> None:
    """A change through the API, then shutdown: the log ends with a signed checkpoint and
    GET /audit/verify counted it while running."""
    settings = load_settings(data_dir=tmp_path / "d")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        assert http.put("/api/v1/devices/p-9", json={"model": "pump"}).status_code == 200
        verified = http.get("/api/v1/audit/verify").json()
        assert verified["ok"]
        assert verified["unprotected"] >= 1
    last = json.loads(_lines(audit_path(settings))[-1])
    assert last["kind"] == CHECKPOINT
    pem = default_key_path(settings.data_dir).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert check(audit_path(settings), key.public_key(), require_checkpoint_file=True).ok
