"""The API under fuzzing: schemathesis generates requests for every operation of the served
OpenAPI document (authenticated as an admin) and no answer may be a server error; every id
path parameter gets traversal, SQL-meaningful, NUL and unicode strings and answers 4xx.

The server runs for real on a free port, with its own data directory and a few devices,
rules and alerts, so generated ids sometimes hit real rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.serving import serve
from trellis.api.app import create_app
from trellis.auth.users import SCOPES, UserStore
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.store.metadata import open_metadata

#: Strings an attacker puts in ids: traversal, SQL, NUL, control and unusual unicode.
HOSTILE = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "'; DROP TABLE devices;--",
    '" OR "1"="1',
    "%00",
    "\x00",
    "ü🚀\u202e\ufeff",
    "a" * 5000,
    "1 UNION SELECT * FROM users",
]


@dataclass(frozen=True)
class Fuzzed:
    """The server under test and an admin's headers."""

    url: str
    headers: dict[str, str]
    data_dir: Path


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A server with authentication on, an admin token and a little data to hit."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRELLIS_AUTH__LOOPBACK_ADMIN", raising=False)
        data = tmp_path_factory.mktemp("fuzz") / "data"
        settings = load_settings(data_dir=data)
        engine = open_metadata(settings.metadata_url)
        users = UserStore(engine)
        users.add("fuzzer", "default", "admin", "correct horse battery staple")
        token = users.issue_token("fuzzer", list(SCOPES), 1)
        engine.dispose()
        headers = {"Authorization": f"Bearer {token}"}
        with (
            serve(create_app(settings)) as url,
            httpx.Client(base_url=url, headers=headers, timeout=20) as http,
        ):
            assert http.put("/api/v1/devices/p-1", json={"model": "pump"}).status_code == 200
            body = {"ts": now_ms(), "seq": 1, "values": {"pressure": 3.0}}
            posted = http.post("/api/v1/telemetry/p-1", content=msgspec.json.encode(body))
            assert posted.status_code == 202
            yield Fuzzed(url, headers, data)


def test_no_operation_answers_a_server_error(fuzzed: Fuzzed) -> None:
    """Generated requests, valid and invalid, for every operation never get a 5xx.

    Each operation gets its own small hypothesis run (a few positive and a few negative
    examples) so the whole spec is covered in seconds; a failure names the operation and
    shows the request to reproduce it."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 60
    for operation in operations:
        _fuzz(operation.as_strategy(GenerationMode.POSITIVE), fuzzed)
        if _can_be_invalid(operation):
            _fuzz(operation.as_strategy(GenerationMode.NEGATIVE), fuzzed)


def _can_be_invalid(operation: Any) -> bool:
    """Invalid input needs a body, or a parameter that is not any string in the path."""
    if operation.body:
        return True
    return any(
        not (p.definition["in"] == "path" and set(p.definition["schema"]) <= {"type", "title"})
        for p in operation.iter_parameters()
    )


def _fuzz(strategy: Any, fuzzed: Fuzzed) -> None:
    @given(case=strategy)
    @settings(
        max_examples=3,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        if case.path.endswith("/commands") and isinstance(case.body, dict):
            case.body["timeout_s"] = 0.1  # a command waits for its device; none answers here
        case.call_and_validate(
            base_url=fuzzed.url, headers=fuzzed.headers, checks=[not_a_server_error], timeout=20
        )

    run()


def _operations(http: httpx.Client) -> list[tuple[str, str]]:
    spec = http.get("/api/v1/openapi.json").json()
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"} and "{" in path
    ]


def test_hostile_ids_in_every_path_parameter_answer_4xx(fuzzed: Fuzzed) -> None:
    """Each id path parameter of every operation, given each hostile string (encoded, and
    for the traversal raw as well), answers 4xx, never 5xx; nothing outside is read and the
    tables are all still there."""
    with httpx.Client(base_url=fuzzed.url, headers=fuzzed.headers, timeout=20) as http:
        before = http.get("/api/v1/devices").json()
        operations = _operations(http)
        assert len(operations) >= 30
        tried = 0
        for method, path in operations:
            names = re.findall(r"\{([^}]+)\}", path)
            for name in names:
                for hostile in HOSTILE:
                    for encoded in {quote(hostile, safe=""), quote(hostile, safe="/")}:
                        url = path.replace(f"{{{name}}}", encoded)
                        for other in names:  # the other parameters get a plain value
                            url = url.replace(f"{{{other}}}", "p-1")
                        answer = http.request(method, url, json={})
                        where = f"{method.upper()} {path} {name}={hostile[:40]!r}"
                        assert 400 <= answer.status_code < 500, f"{where}: {answer.status_code}"
                        assert "root:x:0:0" not in answer.text, f"{where} read /etc/passwd"
                        tried += 1
        assert tried >= len(operations) * len(HOSTILE)
        assert http.get("/api/v1/devices").json() == before
        assert http.get("/api/v1/rules").status_code == 200
        assert http.get("/api/v1/alerts").status_code == 200
