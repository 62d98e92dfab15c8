"""`trellis policy test`: (principal, action, resource, expected) tables beside the policies,
explanations that name the policy's file and line, refusals of bad tables and bad policies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.auth.conftest import Secured
from trellis.auth.policy import PolicyEngine, PolicyError, policy_files
from trellis.auth.policy_tests import (
    PolicyTestError,
    api_actions,
    parse_policy_tests,
    run_policy_tests,
)
from trellis.auth.users import ROLES, Principal
from trellis.cli import app

ACTIONS = api_actions()

CUSTOM = """// viewers read; nobody but admins deletes rules
@id("viewers-read")
permit (principal in Role::"viewer", action in Action::"read", resource)
when { resource in principal.tenant };

@id("admins")
permit (principal in Role::"admin", action, resource)
when { resource in principal.tenant };

@id("no-rule-deletes-on-friday")
forbid (principal, action == Action::"rules.delete_rule", resource)
when { principal.tenant == Tenant::"frozen" };
"""


def _policy_dir(tmp_path: Path, table: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "site.cedar").write_text(CUSTOM)
    (tmp_path / "site.tests.csv").write_text(table)
    return tmp_path


def test_built_in_tables_cover_every_default_role_and_pass() -> None:
    """The tables beside default.cedar test every default role and every decision passes."""
    report = run_policy_tests()
    assert report.ok, [(r.case.line, r.failures) for r in report.results if not r.ok]
    roles = {result.case.principal.role for result in report.results}
    assert set(ROLES) <= roles
    assert sum(result.decisions for result in report.results) > 10 * len(ROLES)


def test_a_failing_row_names_its_line_and_the_deciding_policy(tmp_path: Path) -> None:
    """A wrong expectation fails with the table's line and 'policy <id> (<file>:<line>)'."""
    table = (
        "principal,action,resource,expected\n"
        "viewer@acme,group:read,Tenant::acme,allow\n"
        "# an admin of a frozen tenant may not delete rules\n"
        "admin@frozen,rules.delete_rule,Tenant::frozen,allow\n"
        "admin@frozen,rules.put_rule,Tenant::frozen,allow\n"
    )
    report = run_policy_tests(_policy_dir(tmp_path, table), actions=ACTIONS)
    assert (report.passed, report.failed) == (2, 1)
    bad = next(result for result in report.results if not result.ok)
    assert (bad.case.file, bad.case.line) == ("site.tests.csv", 4)
    [(action, why)] = bad.failures
    assert action == "rules.delete_rule"
    assert "forbidden by policy no-rule-deletes-on-friday (site.cedar:10)" in why
    good = report.results[2]
    assert "permitted by policy admins (site.cedar:6)" in good.example


def test_explanations_of_the_server_engine_name_file_and_line() -> None:
    """The engine the API uses explains allows with the built-in policy's id and line."""
    engine = PolicyEngine(ACTIONS, policy_files(None))
    operator = Principal("o", "acme", "operator", frozenset(), "t")
    allowed = engine.authorize(operator, "alerts.acknowledge_alert", ("Tenant", "acme"))
    assert allowed.explanation == "permitted by policy operator (default.cedar:19)"
    denied = engine.authorize(operator, "rules.delete_rule", ("Tenant", "acme"))
    assert denied.explanation.startswith("denied: no policy permits it (role 'operator'")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("viewer,devices.list_devices,Tenant::a,allow", "not [name:]role@tenant[/site]"),
        ("viewer@a,devices.nope,Tenant::a,allow", "unknown action 'devices.nope'"),
        ("viewer@a,group:root,Tenant::a,allow", "unknown action 'group:root'"),
        ("viewer@a,*,Tenant::a,maybe", "'maybe' is not allow or deny"),
        ("viewer@a,*,Planet::a,deny", "unknown resource type 'Planet'"),
        ("viewer@a,*,Tenant-a,deny", "is not Type::id"),
        ("viewer@a,*,Tenant::a", "3 cells"),
    ],
)
def test_malformed_rows_are_refused_with_file_and_line(row: str, message: str) -> None:
    """Each malformed row raises PolicyTestError naming the file, line and what is wrong."""
    text = f"principal,action,resource,expected\n# comment\n{row}\n"
    with pytest.raises(PolicyTestError, match=r"t\.csv:3") as caught:
        parse_policy_tests(text, "t.csv", ACTIONS)
    assert message in str(caught.value)


@given(st.text(max_size=200))
def test_any_table_text_parses_or_is_refused_cleanly(text: str) -> None:
    """Arbitrary text is either rows or a PolicyTestError, never another exception."""
    refusal = ""
    try:
        cases = parse_policy_tests(text, "fuzz.csv", ACTIONS)
    except PolicyTestError as exc:
        refusal, cases = str(exc), []
    assert refusal.startswith("fuzz.csv:") or not refusal
    assert all(case.file == "fuzz.csv" and case.line >= 1 for case in cases)


@pytest.mark.parametrize(
    "bad",
    [
        'permit (principal in Role::"viewer", action, resource',  # syntax
        'permit (principal, action == Action::"devices.nope", resource);',  # schema
    ],
)
def test_a_bad_policy_file_is_refused_and_the_old_set_kept(tmp_path: Path, bad: str) -> None:
    """Loading files with a syntax or schema error raises; decisions stay the old set's."""
    engine = PolicyEngine(ACTIONS, policy_files(None))
    viewer = Principal("v", "acme", "viewer", frozenset(), "t")
    (tmp_path / "a.cedar").write_text(CUSTOM)
    (tmp_path / "b.cedar").write_text(bad)
    with pytest.raises(PolicyError):
        engine.load_files(policy_files(tmp_path))
    decision = engine.authorize(viewer, "devices.list_devices", ("Tenant", "acme"))
    assert decision.explanation == "permitted by policy viewer (default.cedar:23)"
    with pytest.raises(PolicyError):
        run_policy_tests(tmp_path, actions=ACTIONS)


def test_cli_policy_test(tmp_path: Path) -> None:
    """`trellis policy test` passes the built-ins; a failing row exits 1 naming its line;
    a malformed table or a directory without tables exits 2."""
    runner = CliRunner()
    ok = runner.invoke(app, ["policy", "test"])
    assert ok.exit_code == 0, ok.output
    assert "decisions as expected" in ok.output
    failing = _policy_dir(tmp_path / "f", "viewer@acme,rules.put_rule,Tenant::acme,allow\n")
    result = runner.invoke(app, ["policy", "test", str(failing)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "site.tests.csv:1" in result.output
    assert "1 of 1 rows failed" in result.output
    malformed = _policy_dir(tmp_path / "m", "viewer@acme,*,Tenant::acme\n")
    assert runner.invoke(app, ["policy", "test", str(malformed)]).exit_code == 2
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "p.cedar").write_text(CUSTOM)
    assert runner.invoke(app, ["policy", "test", str(empty)]).exit_code == 2


def test_api_runs_the_tables_against_the_loaded_policies(secured: Secured) -> None:
    """GET /api/v1/policies/tests: auditors get every row and its explanation; viewers 403."""
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        auditor = {"Authorization": f"Bearer {secured.tokens['auditor']}"}
        answer = http.get("/api/v1/policies/tests", headers=auditor)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["ok"]
        assert body["failed"] == 0
        assert body["passed"] == len(body["rows"]) >= 30
        first = body["rows"][0]
        assert (first["file"], first["principal"], first["expected"]) == (
            "default.tests.csv",
            "test-admin:admin@acme",
            "allow",
        )
        assert first["explanation"].startswith("permitted by policy admin (default.cedar:")
        viewer = {"Authorization": f"Bearer {secured.tokens['viewer']}"}
        assert http.get("/api/v1/policies/tests", headers=viewer).status_code == 403
