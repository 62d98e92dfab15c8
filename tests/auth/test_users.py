"""Users and tokens: hashed at rest, bad input refused, `trellis users` end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from trellis.auth.users import TokenError, UserStore
from trellis.cli import app
from trellis.core.errors import ConflictError
from trellis.store.metadata import api_tokens, users


def test_passwords_and_tokens_are_stored_hashed(metadata_engine: sa.Engine) -> None:
    """Neither the password nor the token secret appears in the database."""
    store = UserStore(metadata_engine)
    store.add("ann", "default", "viewer", "a long enough password")
    token = store.issue_token("ann", ["read"], 1)
    with metadata_engine.connect() as conn:
        dumped = repr(conn.execute(sa.select(users)).all()) + repr(
            conn.execute(sa.select(api_tokens)).all()
        )
    assert "a long enough password" not in dumped
    assert token.split(".", 1)[1] not in dumped
    assert store.resolve(token).role == "viewer"
    assert store.login("ann", "a long enough password") is not None
    assert store.login("ann", "wrong password here") is None
    assert store.login("nobody", "a long enough password") is None


@pytest.mark.parametrize(
    ("name", "role", "password"),
    [
        ("ann", "root", "a long enough password"),
        ("../etc", "viewer", "a long enough password"),
        ("x'; drop table users;--", "viewer", "a long enough password"),
        ("ann", "viewer", "short"),
    ],
)
def test_bad_users_are_refused(
    metadata_engine: sa.Engine, name: str, role: str, password: str
) -> None:
    """An unknown role, a traversal or SQL-meaningful name, a short password: refused."""
    with pytest.raises(ValueError, match=r"role|name|password"):
        UserStore(metadata_engine).add(name, "default", role, password)


def test_duplicate_user_and_bad_scope(metadata_engine: sa.Engine) -> None:
    """A second user of the same name conflicts; an unknown scope or garbage token is refused."""
    store = UserStore(metadata_engine)
    store.add("ann", "default", "viewer", "a long enough password")
    with pytest.raises(ConflictError):
        store.add("ann", "default", "viewer", "a long enough password")
    with pytest.raises(ValueError, match="unknown scope"):
        store.issue_token("ann", ["root"], 1)
    for junk in ("", "trl_", "trl_../../x.y", "trl_' OR 1=1 --.z"):
        with pytest.raises(TokenError):
            store.resolve(junk)


def test_cli_users_add_list_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trellis users add`, `list` and `token` work on the configured data directory."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path / "d"))
    runner = CliRunner()
    added = runner.invoke(app, ["users", "add", "bob", "--role", "operator"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["users", "list"])
    assert "bob" in listed.output
    assert "operator" in listed.output
    token = runner.invoke(app, ["users", "token", "bob", "--scope", "read", "--scope", "operate"])
    assert token.exit_code == 0
    assert token.stdout.startswith("trl_")
    assert runner.invoke(app, ["users", "add", "eve", "--role", "root"]).exit_code == 2
    assert runner.invoke(app, ["users", "token", "nobody"]).exit_code == 2


def test_cli_users_disable_enable_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trellis users disable` stops the tokens and sessions at once, `enable` restores the
    tokens, `rotate` revokes the old tokens and prints one new token."""
    from trellis.auth.sessions import SessionStore
    from trellis.core.config import load_settings
    from trellis.store.metadata import open_metadata

    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path / "d"))
    runner = CliRunner()
    assert runner.invoke(app, ["users", "add", "bob", "--role", "operator"]).exit_code == 0
    old = runner.invoke(app, ["users", "token", "bob"]).stdout.strip()
    engine = open_metadata(load_settings().metadata_url)
    store, sessions = UserStore(engine), SessionStore(engine, 3600, 600)
    cookie = sessions.create("bob")
    disabled = runner.invoke(app, ["users", "disable", "bob"])
    assert disabled.exit_code == 0, disabled.output
    assert "1 session(s) ended" in disabled.output
    assert "disabled" in runner.invoke(app, ["users", "list"]).output
    with pytest.raises(TokenError, match="disabled"):
        store.resolve(old)
    assert sessions.get(cookie) is None
    assert runner.invoke(app, ["users", "enable", "bob"]).exit_code == 0
    assert store.resolve(old).name == "bob"
    rotated = runner.invoke(app, ["users", "rotate", "bob", "--scope", "operate"])
    assert rotated.exit_code == 0
    assert store.resolve(rotated.stdout.strip()).scopes == {"operate"}
    with pytest.raises(TokenError, match="unknown"):
        store.resolve(old)
    assert runner.invoke(app, ["users", "disable", "nobody"]).exit_code == 2
    engine.dispose()


def test_token_cache_answers_without_the_database_and_forgets_on_revocation(
    metadata_engine: sa.Engine,
) -> None:
    """A resolved token is served from memory; disabling the user or rotating the tokens in
    this process takes effect at once, and a forged token never gets a cache entry."""
    store = UserStore(metadata_engine, token_cache_s=60)
    store.add("cat", "default", "operator", "correct horse battery")
    token = store.issue_token("cat", ["read"], 1)
    assert store.cached(token) is None
    assert store.resolve(token).name == "cat"
    assert store.cached(token) is not None
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(TokenError, match="forged"):
        store.resolve(forged)
    assert store.cached(forged) is None
    store.set_disabled("cat", True)
    assert store.cached(token) is None
    with pytest.raises(TokenError, match="disabled"):
        store.resolve(token)
    store.set_disabled("cat", False)
    assert store.resolve(token).name == "cat"
    new = store.rotate_token("cat", ["read"], 1)
    with pytest.raises(TokenError, match="unknown"):
        store.resolve(token)
    assert store.resolve(new).name == "cat"


def test_another_process_revocation_takes_effect_within_the_cache_time(
    metadata_engine: sa.Engine,
) -> None:
    """The CLI disabling a user (another UserStore on the same database) is seen by the
    server's cache once its entries expire: the documented bound of staleness."""
    server = UserStore(metadata_engine, token_cache_s=0.3)
    cli = UserStore(metadata_engine)
    cli.add("dan", "default", "operator", "correct horse battery")
    token = cli.issue_token("dan", ["read"], 1)
    assert server.resolve(token).name == "dan"
    cli.set_disabled("dan", True)
    assert server.resolve(token).name == "dan"  # within the bound: still cached
    time.sleep(0.35)
    with pytest.raises(TokenError, match="disabled"):
        server.resolve(token)


def test_a_lookup_racing_a_revocation_is_not_cached(metadata_engine: sa.Engine) -> None:
    """A lookup that read the row before a revocation committed must not put the old answer
    back in the cache after the revocation cleared it."""
    store = UserStore(metadata_engine, token_cache_s=60)
    store.add("eve", "default", "operator", "correct horse battery")
    token = store.issue_token("eve", ["read"], 1)
    generation = store._generation
    principal = store.resolve(token)
    store._forget_tokens()
    store._remember(token, principal, 2**62, generation)  # the late write of the racer
    assert store.cached(token) is None
