"""A real server with authentication as `serve` runs it: no loopback admin, tokens only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serving import serve
from trellis.api.app import create_app
from trellis.auth.users import ROLES, SCOPES, UserStore
from trellis.core.config import Settings, load_settings
from trellis.store.metadata import open_metadata

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Secured:
    """The server's URL, settings and one full-scope token per default role."""

    url: str
    settings: Settings
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A server with auth on (loopback admin off) and a user of each role in tenant default."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRELLIS_AUTH__LOOPBACK_ADMIN", raising=False)
        data: Path = tmp_path_factory.mktemp("auth") / "data"
        settings = load_settings(data_dir=data)
        assert not settings.auth.loopback_admin
        engine = open_metadata(settings.metadata_url)
        users = UserStore(engine)
        tokens = {}
        for role in ROLES:
            site = "north" if role == "contractor" else None
            users.add(f"u-{role}", "default", role, PASSWORD, site=site)
            tokens[role] = users.issue_token(f"u-{role}", list(SCOPES), 1)
        users.add("stranger", "other", "admin", PASSWORD)
        tokens["stranger"] = users.issue_token("stranger", list(SCOPES), 1)
        engine.dispose()
        with serve(create_app(settings)) as url:
            yield Secured(url, settings, tokens)
