"""Users and tokens: hashed at rest, bad input refused, `trellis users` end to end."""

from __future__ import annotations

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
