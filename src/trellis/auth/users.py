"""Local users with scrypt-hashed passwords, and scoped, expiring API tokens hashed at rest."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.errors import ConflictError, NotFoundError
from trellis.store.metadata import api_tokens, users

__all__ = ["ROLES", "SCOPES", "Principal", "TokenError", "UserStore", "hash_password"]

#: The default roles; the built-in policies give each its rights within its tenant.
ROLES = ("admin", "engineer", "data_scientist", "operator", "viewer", "auditor", "contractor")
#: What a token may be used for: the action groups of the policy schema.
SCOPES = ("read", "write", "operate", "ml", "audit", "admin")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_PREFIX = "trl_"

# Every API request resolves its token: built per call, this statement cost two thirds
# of the lookup (measured: ~380 µs of CPU per request against ~120 µs built once).
_TOKEN = (
    sa.select(api_tokens, users.c.tenant, users.c.role, users.c.disabled, users.c.site)
    .join(users, users.c.name == api_tokens.c.user)
    .where(api_tokens.c.id == sa.bindparam("p_id"))
)


class TokenError(Exception):
    """A bearer token that is malformed, unknown, forged or expired (the reason is for logs)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (through a token or the loopback admin session)."""

    name: str
    tenant: str
    role: str
    scopes: frozenset[str]
    via: str  # "token:<id>", "password", "loopback"
    site: str | None = None  # limited to this site of the tenant (a contractor); None: all


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (stdlib scrypt: memory-hard, no extra dependency)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def _check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def _digest(secret: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode()).hexdigest()


class UserStore:
    """Users and tokens in the metadata database.

    Resolved tokens are cached for ``token_cache_s`` seconds (keyed by the token's digest,
    never the token), so the API's gate answers most requests without a database read or a
    thread hop. Disabling a user or rotating tokens here clears the cache at once; a change
    made by another process on the same database (the CLI) takes effect within
    ``token_cache_s`` -- the bounded staleness a token-review cache in front of any identity
    store accepts. ``0`` turns the cache off.
    """

    def __init__(
        self, engine: sa.Engine, *, token_cache_s: float = 0.0, token_cache_size: int = 4096
    ) -> None:
        self._engine = engine
        self._cache_s = token_cache_s
        self._cache_size = token_cache_size
        # digest of the whole token -> (principal, expires_ms, monotonic deadline of the entry)
        self._cache: OrderedDict[str, tuple[Principal, int, float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Bumped by every change; a lookup that raced with one does not cache its answer.
        self._generation = 0

    @property
    def engine(self) -> sa.Engine:
        """The metadata database the users live in."""
        return self._engine

    def count(self) -> int:
        """How many users exist (zero on first start)."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())

    def add(
        self,
        name: str,
        tenant: str,
        role: str,
        password: str,
        *,
        must_change: bool = False,
        site: str | None = None,
    ) -> None:
        """Create a user (``site``: limited to that site of the tenant); an unknown role, a
        contractor without a site or an existing name is refused."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "contractor" and not site:
            raise ValueError("a contractor works at one site: give --site")
        if site is not None and not 1 <= len(site) <= 128:
            raise ValueError(f"bad site {site!r}: 1-128 characters")
        if (
            not name
            or len(name) > 64
            or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            raise ValueError(f"bad user name {name!r}: letters, digits, '-', '_', '.' (1-64)")
        if len(password) < 12:
            raise ValueError("a password needs at least 12 characters")
        row = {
            "name": name,
            "tenant": tenant,
            "role": role,
            "password_hash": hash_password(password),
            "must_change": must_change,
            "created_ms": now_ms(),
            "site": site,
        }
        with self._engine.begin() as conn:
            if conn.execute(sa.select(users.c.name).where(users.c.name == name)).first():
                raise ConflictError(f"user {name!r} exists")
            conn.execute(users.insert().values(row))

    def all(self) -> list[dict[str, object]]:
        """Every user without the password hash."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    users.c.name, users.c.tenant, users.c.role, users.c.created_ms, users.c.disabled
                ).order_by(users.c.name)
            ).mappings()
            return [dict(row) for row in rows]

    def login(self, name: str, password: str) -> Principal | None:
        """The user when the password matches, else ``None`` (same work either way)."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            _check_password(password, hash_password("not-a-user-password"))
            return None
        if not _check_password(password, row["password_hash"]) or row["disabled"]:
            return None
        return Principal(
            row["name"], row["tenant"], row["role"], frozenset(SCOPES), "password", row["site"]
        )

    def issue_token(self, name: str, scopes: list[str], days: float) -> str:
        """A new token ``trl_<id>.<secret>``; only its digest is stored, so show it once."""
        bad: list[str] = sorted(set(scopes) - set(SCOPES))
        if bad or not scopes:
            raise ValueError(f"unknown scope(s) {bad}; choose from {', '.join(SCOPES)}")
        if days <= 0:
            raise ValueError("a token must live for a positive number of days")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            if not conn.execute(sa.select(users.c.name).where(users.c.name == name)).first():
                raise NotFoundError("user", name)
            conn.execute(
                api_tokens.insert().values(
                    id=token_id,
                    user=name,
                    digest=_digest(secret),
                    scopes=sorted(set(scopes)),
                    expires_ms=now_ms() + int(days * 86_400_000),
                    created_ms=now_ms(),
                )
            )
        return f"{_PREFIX}{token_id}.{secret}"

    def cached(self, token: str) -> Principal | None:
        """The principal of a token resolved less than ``token_cache_s`` ago and not expired
        since, without touching the database; ``None`` means: call :meth:`resolve`."""
        if not self._cache_s:
            return None
        key = _digest(token)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            principal, expires_ms, deadline = hit
            if deadline <= time.monotonic() or expires_ms <= now_ms():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return principal

    def _remember(self, token: str, principal: Principal, expires_ms: int, generation: int) -> None:
        if not self._cache_s:
            return
        with self._cache_lock:
            if generation != self._generation:
                return
            self._cache[_digest(token)] = (principal, expires_ms, time.monotonic() + self._cache_s)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forget_tokens(self) -> None:
        """After a change to who may use which token: the next request reads the database."""
        with self._cache_lock:
            self._generation += 1
            self._cache.clear()

    def resolve(self, token: str) -> Principal:
        """The principal a bearer token stands for; :class:`TokenError` when it is not valid."""
        if not token.startswith(_PREFIX) or "." not in token:
            raise TokenError("not a Trellis token")
        hit = self.cached(token)
        if hit is not None:
            return hit
        token_id, _, secret = token[len(_PREFIX) :].partition(".")
        generation = self._generation
        with self._engine.connect() as conn:
            row = conn.execute(_TOKEN, {"p_id": token_id}).mappings().first()
        if row is None or not hmac.compare_digest(row["digest"], _digest(secret)):
            raise TokenError("unknown or forged token")
        if row["expires_ms"] <= now_ms():
            raise TokenError("expired token")
        if row["disabled"]:
            raise TokenError("the user is disabled")
        principal = Principal(
            row["user"],
            row["tenant"],
            row["role"],
            frozenset(row["scopes"]),
            f"token:{token_id}",
            row["site"],
        )
        self._remember(token, principal, int(row["expires_ms"]), generation)
        return principal

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (or re-enable) a user: passwords and tokens stop working at once."""
        with self._engine.begin() as conn:
            done = conn.execute(
                users.update().where(users.c.name == name).values(disabled=disabled)
            )
            if not done.rowcount:
                raise NotFoundError("user", name)
        self._forget_tokens()

    def tokens(self, name: str) -> list[dict[str, object]]:
        """The tokens of ``name`` (id, scopes, expiry; never the digest)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    api_tokens.c.id,
                    api_tokens.c.scopes,
                    api_tokens.c.expires_ms,
                    api_tokens.c.created_ms,
                )
                .where(api_tokens.c.user == name)
                .order_by(api_tokens.c.created_ms)
            ).mappings()
            return [dict(row) for row in rows]

    def rotate_token(self, name: str, scopes: list[str], days: float) -> str:
        """Revoke every token of ``name`` and issue one new token (shown once)."""
        token = self.issue_token(name, scopes, days)
        keep = token[len(_PREFIX) :].partition(".")[0]
        with self._engine.begin() as conn:
            conn.execute(
                api_tokens.delete().where(api_tokens.c.user == name, api_tokens.c.id != keep)
            )
        self._forget_tokens()
        return token

    def change_password(self, name: str, current: str, new: str) -> None:
        """Replace the password after checking the current one; clears "must change".

        Raises ``ValueError`` when the current password is wrong, the new one is shorter
        than 12 characters or equals the current one."""
        if len(new) < 12:
            raise ValueError("a password needs at least 12 characters")
        if new == current:
            raise ValueError("the new password must differ from the current one")
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(users.c.password_hash).where(users.c.name == name)).first()
        if row is None or not _check_password(current, row.password_hash):
            raise ValueError("the current password is wrong")
        with self._engine.begin() as conn:
            conn.execute(
                users.update()
                .where(users.c.name == name)
                .values(password_hash=hash_password(new), must_change=False)
            )
