"""Server-side dashboard sessions: a random cookie id, stored only as its sha256.

The cookie carries 256 random bits; the database holds their digest, the user, a CSRF token
(synchronizer pattern: every state-changing request must echo it), an absolute expiry and
the last use (an idle session ends). A leaked database therefore yields no usable cookie,
and logging out or disabling the user ends the session on the server, not just in the
browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from trellis.auth.users import SCOPES, Principal
from trellis.core.clock import now_ms
from trellis.store.metadata import sessions, users

__all__ = ["Session", "SessionStore"]

#: A session's last use is written at most this often (not on every page view).
_TOUCH_MS = 60_000
#: Built once: constructing the statement cost more than running it (bench/auth.py).
_LOOKUP = (
    sa.select(
        sessions,
        users.c.tenant,
        users.c.role,
        users.c.site,
        users.c.disabled,
        users.c.must_change,
    )
    .join(users, users.c.name == sessions.c.user)
    .where(sessions.c.digest == sa.bindparam("digest"))
)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who, and the CSRF token its pages must send back."""

    principal: Principal
    csrf: str
    expires_ms: int
    must_change: bool = False  # the one-time password of the first admin: change it first

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether ``sent`` is this session's CSRF token (constant-time)."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class SessionStore:
    """Sessions in the metadata database, so any API worker can serve any page."""

    def __init__(self, engine: sa.Engine, lifetime_s: float, idle_s: float) -> None:
        self._engine = engine
        self.lifetime_s = lifetime_s
        self._lifetime_ms = int(lifetime_s * 1000)
        self._idle_ms = int(idle_s * 1000)

    def create(self, user: str, client: str = "") -> str:
        """Start a session for ``user``; returns the cookie value (shown to nobody else)."""
        session_id = secrets.token_urlsafe(32)
        now = now_ms()
        with self._engine.begin() as conn:
            # Expired sessions are swept here, so the table stays the size of the live ones.
            conn.execute(sessions.delete().where(sessions.c.expires_ms <= now))
            conn.execute(
                sessions.insert().values(
                    digest=_digest(session_id),
                    user=user,
                    csrf=secrets.token_urlsafe(32),
                    created_ms=now,
                    expires_ms=now + self._lifetime_ms,
                    last_seen_ms=now,
                    client=client[:64],
                )
            )
        return session_id

    def get(self, session_id: str) -> Session | None:
        """The live session behind a cookie, or ``None`` (unknown, expired, idle, disabled)."""
        if not session_id or len(session_id) > 128:
            return None
        digest, now = _digest(session_id), now_ms()
        with self._engine.connect() as conn:
            row = conn.execute(_LOOKUP, {"digest": digest}).mappings().first()
        if row is None:
            return None
        if row["disabled"] or row["expires_ms"] <= now or now - row["last_seen_ms"] > self._idle_ms:
            self.end(session_id)
            return None
        if now - row["last_seen_ms"] > _TOUCH_MS:
            with self._engine.begin() as conn:
                conn.execute(
                    sessions.update().where(sessions.c.digest == digest).values(last_seen_ms=now)
                )
        principal = Principal(
            row["user"], row["tenant"], row["role"], frozenset(SCOPES), "session", row["site"]
        )
        return Session(principal, row["csrf"], row["expires_ms"], bool(row["must_change"]))

    def end(self, session_id: str) -> None:
        """Log out: the session is gone on the server."""
        with self._engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.digest == _digest(session_id)))

    def end_all(self, user: str) -> int:
        """End every session of ``user`` (disabled, or password changed); returns how many."""
        with self._engine.begin() as conn:
            return conn.execute(sessions.delete().where(sessions.c.user == user)).rowcount
