"""The platform's Ed25519 signing key: from the settings, a file, or generated on first start.

One key signs what the platform vouches for (the audit log's checkpoints today). It is read
in this order: ``trust.platform_key`` (PEM or base64 of the 32-byte seed, typically from the
environment), ``trust.platform_key_file``, ``<data_dir>/keys/platform-ed25519.pem``. The last
is generated when missing, written with mode 0600 before any byte of the key is, and never
logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trellis.core.config import Settings
from trellis.core.errors import ConfigError

__all__ = [
    "default_key_path",
    "key_id",
    "load_public_key",
    "parse_private_key",
    "platform_key",
    "public_pem",
]


def default_key_path(data_dir: Path) -> Path:
    """Where the generated key lives."""
    return data_dir / "keys" / "platform-ed25519.pem"


def parse_private_key(text: str, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM or base64 of its 32-byte seed; a clear error if not."""
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(stripped.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"{where}: not an Ed25519 private key")
            return key
        seed = base64.b64decode(stripped, validate=True)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{where}: not a PEM Ed25519 private key or base64 seed") from exc
    if len(seed) != 32:
        raise ConfigError(f"{where}: an Ed25519 seed has 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _generate(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two processes starting at once cannot both write a key; the loser reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_private_key(path.read_text(), str(path))
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def platform_key(settings: Settings) -> Ed25519PrivateKey:
    """The platform key as configured, generating the default file on first start."""
    trust = settings.trust
    if trust.platform_key is not None:
        return parse_private_key(trust.platform_key.get_secret_value(), "trust.platform_key")
    path = trust.platform_key_file or default_key_path(settings.data_dir)
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"{path}: the platform key is readable by group or others; chmod 600 it"
            )
        return parse_private_key(path.read_text(), str(path))
    if trust.platform_key_file is not None:
        raise ConfigError(f"trust.platform_key_file {path} does not exist")
    return _generate(path)


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: sha256 of its raw bytes, 16 hex digits."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM, for auditors who verify the log elsewhere."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM public key (or a private key, whose public half is taken) from ``path``."""
    text = path.read_text()
    if "PRIVATE KEY" in text:
        return parse_private_key(text, str(path)).public_key()
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key
