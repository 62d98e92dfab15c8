"""Policies: validated against the schema at load, a bad set refused with the old one kept,
decisions per default role within the tenant, and cached decisions kept correct."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trellis.api import routes
from trellis.api.auth import operations
from trellis.auth.policy import PolicyEngine, PolicyError, read_policy_dir
from trellis.auth.users import Principal
from trellis.cli import app

ACTIONS = {op.action: op.group for op in operations(routes.router).values()}
T = ("Tenant", "default")

#: (role, action, expected) for the default policies.
TABLE = [
    ("admin", "rules.delete_rule", True),
    ("engineer", "rules.put_rule", True),
    ("engineer", "audit.audit_entries", False),
    ("data_scientist", "models.promote", True),
    ("data_scientist", "rules.put_rule", False),
    ("operator", "alerts.acknowledge_alert", True),
    ("operator", "rules.delete_rule", False),
    ("operator", "devices.put_device", False),
    ("viewer", "devices.list_devices", True),
    ("viewer", "alerts.acknowledge_alert", False),
    ("auditor", "audit.audit_verify", True),
    ("auditor", "flows.deploy_flow", False),
]


@pytest.fixture
def engine() -> PolicyEngine:
    """The default policies over the API's actions."""
    return PolicyEngine(ACTIONS, read_policy_dir(None))


@pytest.mark.parametrize(("role", "action", "expected"), TABLE)
def test_default_roles(engine: PolicyEngine, role: str, action: str, expected: bool) -> None:
    """Each default role may do exactly what its row says within its own tenant."""
    assert (
        engine.authorize(Principal("p", "default", role, frozenset(), "t"), action, T).allowed
        is expected
    )


def test_no_role_crosses_tenants(engine: PolicyEngine) -> None:
    """Even an admin of tenant 'other' is denied every action on tenant 'default'."""
    stranger = Principal("s", "other", "admin", frozenset(), "t")
    assert not any(engine.authorize(stranger, a, T).allowed for a in ACTIONS)


def test_denial_is_explained(engine: PolicyEngine) -> None:
    """A deny says who, what and why; an allow names the policy."""
    decision = engine.authorize(
        Principal("v", "default", "viewer", frozenset(), "t"), "rules.put_rule", T
    )
    assert "viewer" in decision.explanation
    assert "rules.put_rule" in decision.explanation
    assert engine.authorize(
        Principal("a", "default", "admin", frozenset(), "t"), "rules.put_rule", T
    ).reasons


@pytest.mark.parametrize(
    "bad",
    [
        "permit (principal, action",  # syntax
        'permit (principal, action == Action::"no.such.action", resource);',  # unknown action
        'permit (principal in Group::"x", action, resource);',  # unknown entity type
        "permit (principal, action, resource) when { principal.age > 3 };",  # unknown attribute
    ],
)
def test_bad_policy_is_refused_and_old_kept(engine: PolicyEngine, bad: str) -> None:
    """A policy set with a syntax or schema error is refused and decisions keep the old set."""
    viewer = Principal("v", "default", "viewer", frozenset(), "t")
    with pytest.raises(PolicyError):
        engine.load(bad)
    assert engine.authorize(viewer, "devices.list_devices", T).allowed
    assert not engine.authorize(viewer, "rules.put_rule", T).allowed


def test_reload_drops_cached_decisions(engine: PolicyEngine) -> None:
    """After a valid reload, a cached allow is not served any more."""
    viewer = Principal("v", "default", "viewer", frozenset(), "t")
    assert engine.authorize(viewer, "devices.list_devices", T).allowed
    engine.load('permit (principal in Role::"admin", action, resource);')
    assert not engine.authorize(viewer, "devices.list_devices", T).allowed


def test_cache_keys_on_role(engine: PolicyEngine) -> None:
    """The same name with another role gets its own decision, not the cached one."""
    assert engine.authorize(
        Principal("x", "default", "admin", frozenset(), "t"), "rules.put_rule", T
    ).allowed
    assert not engine.authorize(
        Principal("x", "default", "viewer", frozenset(), "t"), "rules.put_rule", T
    ).allowed


def test_cli_validate(tmp_path: Path) -> None:
    """`trellis policy validate DIR` accepts the defaults and refuses a schema error."""
    runner = CliRunner()
    assert runner.invoke(app, ["policy", "validate"]).exit_code == 0
    (tmp_path / "a.cedar").write_text('permit (principal, action == Action::"nope", resource);')
    result = runner.invoke(app, ["policy", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "nope" in result.output


def test_cli_validate_knows_the_dashboard_pages(tmp_path: Path) -> None:
    """A policy naming a dashboard page's action validates offline as it does in the server."""
    (tmp_path / "audit.cedar").write_text(
        'permit (principal in Role::"viewer", action == Action::"dashboard.audit_page", '
        "resource) when { resource in principal.tenant };"
    )
    result = CliRunner().invoke(app, ["policy", "validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
