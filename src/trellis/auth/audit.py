"""A tamper-evident audit log: JSON lines, each entry carrying the hash of the previous one,
with checkpoints signed by the platform's Ed25519 key.

Editing, deleting or reordering any entry breaks the chain at that entry, and
:func:`check` names it. A chain rewritten from scratch (every hash recomputed) is caught by
the first checkpoint whose signature no longer verifies: only the platform key can sign.
Cutting entries off the end is caught by the newest checkpoint, which is also kept beside the
log (``audit.jsonl.checkpoint``): it says how many entries the log had. A checkpoint is
written every ``checkpoint_every`` entries and when the log is closed (server shutdown), so
only entries since the newest checkpoint of a process that crashed are unprotected against
truncation. The file is its own JSON-lines export, checkpoints included.

Several processes may append (the server and CLI commands that write the database): each
append holds an exclusive ``flock`` on the log and continues the chain from the file's
last entry.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trellis.auth.keys import key_id, platform_key
from trellis.core.clock import now_ms
from trellis.core.config import Settings

__all__ = [
    "GENESIS",
    "AuditCheck",
    "AuditLog",
    "Broken",
    "audit_path",
    "check",
    "checkpoint_path",
    "open_audit",
    "record_cli",
    "verify",
]

GENESIS = "0" * 64
CHECKPOINT = "checkpoint"


def _canonical(entry: dict[str, Any], leave_out: tuple[str, ...]) -> bytes:
    body = {k: v for k, v in entry.items() if k not in leave_out}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(entry, ("hash",))).hexdigest()


def _hashed_line(entry: dict[str, Any]) -> tuple[str, bytes]:
    """The hash of ``entry`` (which has none yet) and its line with the hash added, from
    one serialisation: the hash comes last on the line (readers parse the JSON, so the
    order of keys on the line is free; the hash covers the sorted canonical form)."""
    canonical = _canonical(entry, ("hash",))
    digest = hashlib.sha256(canonical).hexdigest()
    return digest, canonical[:-1] + b',"hash":"' + digest.encode() + b'"}\n'


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def checkpoint_path(path: Path) -> Path:
    """Where the newest checkpoint of the log at ``path`` is kept."""
    return path.with_name(path.name + ".checkpoint")


@dataclass(frozen=True, slots=True)
class Broken:
    """The first entry that does not belong to the chain (or the first missing one), and why."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What :func:`check` found: entries and checkpoints that verify, the first break."""

    entries: int
    checkpoints: int
    signatures_checked: bool
    unprotected: int  # entries after the newest checkpoint (a crash could lose them unseen)
    broken: Broken | None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        """The whole log verifies."""
        return self.broken is None


class AuditLog:
    """Appends entries to ``path``, and signed checkpoints when given the platform ``key``."""

    def __init__(
        self, path: Path, key: Ed25519PrivateKey | None = None, checkpoint_every: int = 100
    ) -> None:
        self.path = path
        self.key = key
        self.key_id = key_id(key.public_key()) if key is not None else None
        self.checkpoint_every = checkpoint_every
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file_lock = _FileLock(path.with_name(path.name + ".lock"), self._lock)
        self._seq, self._prev, self._checkpointed = 0, GENESIS, 0
        self._size = -1  # the file size after our last write; another writer changes it
        self._out = -1  # the log, open for appending (O_APPEND: every write lands at the end)
        self._out_ino = -1

    def _sync(self) -> None:
        """Continue from the file's last entry when another process appended (lock held)."""
        try:
            stat = os.stat(self.path)
            size, ino = stat.st_size, stat.st_ino
        except FileNotFoundError:
            size, ino = 0, -1
        if ino != self._out_ino and self._out >= 0:  # replaced or removed: open it anew
            os.close(self._out)
            self._out = -1
        if size == self._size:
            return
        last = _last_line(self.path)
        self._seq, self._prev = 0, GENESIS
        if last is not None:
            entry = json.loads(last)
            self._seq, self._prev = int(entry["seq"]), str(entry["hash"])
        self._checkpointed = 0
        side = checkpoint_path(self.path)
        if side.exists():
            # A damaged checkpoint file is check()'s to report; appending goes on.
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._checkpointed = min(self._seq, int(json.loads(side.read_text())["seq"]))
        self._size = size

    def _write(self, fields: dict[str, Any]) -> dict[str, Any]:
        entry = {"seq": self._seq + 1, "ts_ms": now_ms(), **fields, "prev": self._prev}
        if entry.get("kind") == CHECKPOINT:
            assert self.key is not None
            entry["sig"] = base64.b64encode(
                self.key.sign(_canonical(entry, ("hash", "sig")))
            ).decode()
        entry["hash"], data = _hashed_line(entry)
        if self._out < 0:
            self._out = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            self._out_ino = os.fstat(self._out).st_ino
        written = os.write(self._out, data)
        if written != len(data):  # a full disk: say so rather than leave half a line
            raise OSError(f"audit log {self.path}: wrote {written} of {len(data)} bytes")
        self._seq, self._prev = entry["seq"], entry["hash"]
        self._size += len(data)
        return entry

    def _checkpoint(self) -> dict[str, Any] | None:
        if self.key is None or self._seq == self._checkpointed:
            return None
        entry = self._write({"kind": CHECKPOINT, "entries": self._seq, "key": self.key_id})
        self._checkpointed = entry["seq"]
        side = checkpoint_path(self.path)
        tmp = side.with_name(side.name + ".tmp")
        tmp.write_text(_line(entry) + "\n")
        os.replace(tmp, side)
        return entry

    def _locked(self) -> _FileLock:
        return self._file_lock

    def append(self, **fields: Any) -> dict[str, Any]:
        """Record one event (who, what, from where, decision); returns the stored entry.

        Every ``checkpoint_every`` entries a signed checkpoint follows it."""
        if fields.get("kind") == CHECKPOINT:
            raise ValueError("'kind': 'checkpoint' is reserved for signed checkpoints")
        with self._locked():
            self._sync()
            entry = self._write(fields)
            if self._seq - self._checkpointed >= self.checkpoint_every:
                self._checkpoint()
            return entry

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the log as it is now (when anything was added since the last checkpoint)."""
        with self._locked():
            self._sync()
            return self._checkpoint()

    def close(self) -> None:
        """The checkpoint at shutdown: afterwards, no entry can be cut off unseen."""
        self.checkpoint()
        with self._lock:
            if self._out >= 0:
                os.close(self._out)
                self._out = -1
        self._file_lock.close()

    def entries(self, limit: int = 100, *, tenant: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (of ``tenant``, when given), newest first."""
        if not self.path.exists():
            return []
        found: list[dict[str, Any]] = []
        # Split on "\n" only: entries may hold U+2028 or U+0085 (from a request path), which
        # str.splitlines() would also split on.
        for raw in reversed(self.path.read_bytes().split(b"\n")):
            if not raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a damaged line is check()'s to name; the list shows the rest
            if tenant is None or entry.get("tenant") == tenant:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found


class _FileLock:
    """The thread lock, then an exclusive ``flock`` on a lock file beside the log. The lock
    file stays open between appends (an API server appends on every change)."""

    def __init__(self, path: Path, lock: threading.Lock) -> None:
        self.path, self.lock = path, lock
        self.fd = -1

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            if self.fd < 0:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _last_line(path: Path) -> str | None:
    """The last non-empty line, read from the end (the log can be large)."""
    if not path.exists():
        return None
    with path.open("rb") as source:
        source.seek(0, os.SEEK_END)
        end = source.tell()
        chunk, data = 4096, b""
        while end > 0:
            start = max(0, end - chunk)
            source.seek(start)
            data = source.read(end - start) + data
            end = start
            stripped = data.rstrip(b"\n")
            if b"\n" in stripped or end == 0:
                return stripped.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace") or None
    return None


def _lines(path: Path) -> Iterator[str]:
    with path.open("rb") as source:
        for raw in source:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")


def _signature_problem(entry: dict[str, Any], public_key: Ed25519PublicKey) -> str | None:
    if entry.get("key") != key_id(public_key):
        return f"checkpoint signed by key {entry.get('key')!r}, not the platform key"
    try:
        public_key.verify(
            base64.b64decode(str(entry.get("sig", "")), validate=True),
            _canonical(entry, ("hash", "sig")),
        )
    except (InvalidSignature, ValueError):
        return "checkpoint signature does not verify (the chain was rewritten)"
    return None


def check(
    path: Path,
    public_key: Ed25519PublicKey | None = None,
    *,
    require_checkpoint_file: bool = False,
) -> AuditCheck:
    """Verify the chain, every checkpoint's signature (given the platform's public key) and
    the newest checkpoint kept beside the log; line numbers start at 1.

    Without ``public_key`` the chain and the checkpoint file are still checked, but not who
    signed. ``require_checkpoint_file``: its absence, when the log has checkpoints, is a
    break (for the live log; an exported copy travels without it).
    """
    prev, count, checkpoints, last_checkpoint = GENESIS, 0, 0, 0
    side = checkpoint_path(path)
    newest: Any = None
    if side.exists():
        try:
            newest = json.loads(side.read_text())
        except ValueError:
            newest = None
    wanted = newest.get("seq") if isinstance(newest, dict) else None
    at_wanted: str | None = None  # the log's hash of the entry the checkpoint file names

    def result(broken: Broken | None, warning: str | None = None) -> AuditCheck:
        return AuditCheck(
            count, checkpoints, public_key is not None, count - last_checkpoint, broken, warning
        )

    for number, line in enumerate(_lines(path), start=1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            return result(Broken(number, "not a JSON object (edited or truncated)"))
        if entry.get("seq") != number:
            return result(
                Broken(
                    number,
                    f"sequence {entry.get('seq')!r}, expected {number} "
                    "(entry deleted or reordered)",
                )
            )
        if entry.get("prev") != prev:
            return result(
                Broken(
                    number, "does not chain to the previous entry (deleted, inserted or reordered)"
                )
            )
        if entry.get("hash") != _hash(entry):
            return result(Broken(number, "content does not match its hash (edited)"))
        if entry.get("kind") == CHECKPOINT:
            if entry.get("entries") != number - 1:
                return result(Broken(number, "checkpoint does not count the entries before it"))
            problem = _signature_problem(entry, public_key) if public_key is not None else None
            if problem is not None:
                return result(Broken(number, problem))
            checkpoints, last_checkpoint = checkpoints + 1, number
        prev, count = entry["hash"], count + 1
        if number == wanted:
            at_wanted = prev
    if not side.exists():
        if checkpoints and require_checkpoint_file:
            return result(
                Broken(
                    last_checkpoint + 1,
                    f"the newest checkpoint ({side.name}) is missing: entries after line "
                    f"{last_checkpoint} may have been cut off",
                )
            )
        return result(None, "no checkpoint file: entries cut off the end would go unseen")
    try:
        seq, digest = int(newest["seq"]), str(newest["hash"])
    except (ValueError, KeyError, TypeError):
        return result(Broken(count + 1, f"{side.name} is not a checkpoint (edited)"))
    if newest.get("hash") != _hash(newest) or newest.get("kind") != CHECKPOINT:
        return result(Broken(count + 1, f"{side.name} does not match its hash (edited)"))
    if public_key is not None:
        problem = _signature_problem(newest, public_key)
        if problem is not None:
            return result(Broken(count + 1, f"{side.name}: {problem}"))
    if seq > count:
        return result(
            Broken(
                count + 1,
                f"entries {count + 1}..{seq} are missing: the signed checkpoint says the log "
                f"had {seq} entries, it ends at {count} (tail truncated)",
            )
        )
    if at_wanted != digest:
        return result(Broken(seq, f"entry {seq} is not the checkpoint kept in {side.name}"))
    return result(None)


def verify(path: Path, public_key: Ed25519PublicKey | None = None) -> tuple[int, Broken | None]:
    """(entries checked, the first broken entry or ``None``): :func:`check` in short."""
    found = check(path, public_key)
    return found.entries, found.broken


def audit_path(settings: Settings) -> Path:
    """The platform's audit log file."""
    return settings.data_dir / "audit" / "audit.jsonl"


def open_audit(settings: Settings) -> AuditLog:
    """The platform's audit log, signing checkpoints with the platform key."""
    return AuditLog(
        audit_path(settings), platform_key(settings), settings.trust.audit_checkpoint_every
    )


def record_cli(settings: Settings, action: str, *, tenant: str | None, **detail: Any) -> None:
    """Audit a change a CLI command made directly in the database, where no API gate sees
    it: who (the OS user), what, and a signed checkpoint after it (the command then ends)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid-{os.getuid()}"
    log = open_audit(settings)
    log.append(
        principal=f"os:{user}",
        role="host",
        tenant=tenant,
        via="cli",
        action=action,
        method="CLI",
        client="local",
        decision="allow",
        reason="run on the host with access to the data directory (no API gate)",
        **detail,
    )
    log.close()
