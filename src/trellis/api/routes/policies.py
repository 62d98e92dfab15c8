"""Policy routes: the policy unit tests run against the policies the server has loaded."""

from __future__ import annotations

import asyncio

import msgspec
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from trellis.api.auth import Gate
from trellis.api.deps import PlatformDep
from trellis.api.encoding import documented, json_response
from trellis.auth.policy_tests import (
    PolicyTestError,
    PolicyTestReport,
    policy_test_files,
    run_policy_tests,
)

__all__ = ["PolicyTestRow", "PolicyTests", "router"]

router = APIRouter(tags=["audit"])


class PolicyTestRow(msgspec.Struct, frozen=True):
    """One table row: where it is written, what it asks, and what the policies answered."""

    file: str
    line: int
    principal: str  # name:role@tenant
    action: str
    resource: str
    expected: str  # allow | deny
    ok: bool
    decisions: int
    failures: list[tuple[str, str]]  # (action, explanation) of each wrong answer
    explanation: str  # why, for one decision of the row


class PolicyTests(msgspec.Struct, frozen=True):
    """The tables beside the configured policies, run against the loaded policy set."""

    ok: bool
    passed: int
    failed: int
    rows: list[PolicyTestRow]


def _rows(report: PolicyTestReport) -> PolicyTests:
    rows = [
        PolicyTestRow(
            file=r.case.file,
            line=r.case.line,
            principal=f"{r.case.principal.name}:{r.case.principal.role}@{r.case.principal.tenant}",
            action=r.case.action,
            resource="::".join(r.case.resource),
            expected="allow" if r.case.expected else "deny",
            ok=r.ok,
            decisions=r.decisions,
            failures=list(r.failures),
            explanation=r.example,
        )
        for r in report.results
    ]
    return PolicyTests(report.ok, report.passed, report.failed, rows)


@router.get("/policies/tests", responses=documented(PolicyTests))
async def policy_tests(request: Request, platform: PlatformDep) -> Response:
    """Run the ``*.tests.csv`` tables beside the configured policies against the policies in
    force (what `trellis policy test` runs offline); 422 names a malformed row."""
    gate: Gate = request.app.state.gate
    try:
        tables = policy_test_files(platform.settings.auth.policy_dir)
        report = await asyncio.to_thread(
            run_policy_tests, engine=gate.policies, actions=gate.policies.actions, tables=tables
        )
    except PolicyTestError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(_rows(report))
