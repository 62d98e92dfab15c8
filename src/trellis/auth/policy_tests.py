"""Policy unit tests: (principal, action, resource, expected) tables in ``*.tests.csv`` files
beside the policies, decided through the one :meth:`PolicyEngine.authorize`.

A table row is ``principal,action,resource,expected``: the principal
``[name:]role@tenant[/site]`` (a site for a principal limited to one, a contractor),
an action, ``group:<name>`` (every action of the group) or ``*`` (every action), a resource
``Type::id`` and ``allow`` or ``deny``. Lines starting with ``#`` are comments. A group row
passes only when every action in it gets the expected answer, so a new API operation is
tested by the rows of its group without editing the tables.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from trellis.auth.policy import RESOURCE_TYPES, PolicyEngine, policy_files
from trellis.auth.users import SCOPES, Principal

__all__ = [
    "PolicyCase",
    "PolicyTestError",
    "PolicyTestReport",
    "PolicyTestResult",
    "api_actions",
    "parse_policy_tests",
    "policy_test_files",
    "run_policy_tests",
]

_HEADER = ["principal", "action", "resource", "expected"]


class PolicyTestError(ValueError):
    """A table row that cannot be read; names the file and line."""


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """One row of a table, as written."""

    file: str
    line: int
    principal: Principal
    action: str  # an action, "group:<name>" or "*"
    resource: tuple[str, str]
    expected: bool


@dataclass(frozen=True, slots=True)
class PolicyTestResult:
    """One row's outcome; ``failures`` are (action, explanation) of the wrong answers."""

    case: PolicyCase
    decisions: int
    failures: tuple[tuple[str, str], ...]
    example: str  # the explanation of one decision, to show why

    @property
    def ok(self) -> bool:
        """Every action of the row got the expected answer."""
        return not self.failures


@dataclass(frozen=True, slots=True)
class PolicyTestReport:
    """Every row of every table run against one policy set."""

    policies: list[str]  # where the policies came from
    results: list[PolicyTestResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        """Rows whose every decision was as expected."""
        return sum(result.ok for result in self.results)

    @property
    def failed(self) -> int:
        """Rows with at least one wrong decision."""
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        """Every row passed (and there was at least one)."""
        return bool(self.results) and not self.failed


def _principal(text: str, where: str) -> Principal:
    who, at, place = text.partition("@")
    tenant, slash, site = place.partition("/")
    name, colon, role = who.partition(":")
    if not colon:
        name, role = f"test-{who}", who
    if not at or not role or not tenant or not name or (slash and not site):
        raise PolicyTestError(f"{where}: principal {text!r} is not [name:]role@tenant[/site]")
    return Principal(name, tenant, role, frozenset(SCOPES), "policy-test", site or None)


def _resource(text: str, where: str) -> tuple[str, str]:
    rtype, sep, rid = text.partition("::")
    if not sep or not rid:
        raise PolicyTestError(f"{where}: resource {text!r} is not Type::id")
    if rtype not in RESOURCE_TYPES:
        raise PolicyTestError(
            f"{where}: unknown resource type {rtype!r}; known: {', '.join(RESOURCE_TYPES)}"
        )
    return rtype, rid


def parse_policy_tests(text: str, file: str, actions: Mapping[str, str]) -> list[PolicyCase]:
    """The rows of one table; a malformed row raises :class:`PolicyTestError`."""
    cases: list[PolicyCase] = []
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{file}:{number}"
        cells = [cell.strip() for cell in next(csv.reader(io.StringIO(line)))]
        if not header_seen:
            header_seen = True
            if cells == _HEADER:
                continue
        if len(cells) != 4:
            raise PolicyTestError(f"{where}: {len(cells)} cells; expected {', '.join(_HEADER)}")
        principal, action, resource, expected = cells
        if action != "*" and action not in actions:
            group = action.removeprefix("group:")
            if not action.startswith("group:") or group not in SCOPES:
                raise PolicyTestError(
                    f"{where}: unknown action {action!r} (an action, group:<"
                    f"{'|'.join(SCOPES)}> or *)"
                )
        if expected not in ("allow", "deny"):
            raise PolicyTestError(f"{where}: expected {expected!r} is not allow or deny")
        cases.append(
            PolicyCase(
                file,
                number,
                _principal(principal, where),
                action,
                _resource(resource, where),
                expected == "allow",
            )
        )
    return cases


def policy_test_files(directory: Path | None) -> list[tuple[str, str]]:
    """(name, text) of the ``*.tests.csv`` tables beside the policies of ``directory``, or
    the built-in tables of the built-in policies."""
    if directory is None:
        builtin = resources.files("trellis.auth").joinpath("policies")
        return [
            (entry.name, entry.read_text())
            for entry in sorted(builtin.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".tests.csv")
        ]
    return [(f.name, f.read_text()) for f in sorted(directory.glob("*.tests.csv"))]


def api_actions() -> dict[str, str]:
    """Every API operation's action and its group: the schema the server validates against."""
    from trellis.api import routes  # the API imports this package: import it on use
    from trellis.api.auth import operations

    return {op.action: op.group for op in operations(routes.router).values()}


def _expand(action: str, actions: Mapping[str, str]) -> list[str]:
    if action == "*":
        return sorted(actions)
    if action.startswith("group:") and action not in actions:
        group = action.removeprefix("group:")
        return sorted(a for a, g in actions.items() if g == group)
    return [action]


def run_policy_tests(
    directory: Path | None = None,
    *,
    actions: Mapping[str, str] | None = None,
    engine: PolicyEngine | None = None,
    tables: Sequence[tuple[str, str]] | None = None,
) -> PolicyTestReport:
    """Run the tables beside the policies of ``directory`` (default: the built-in ones).

    ``engine`` tests policies already loaded (the running server's) instead of the files;
    ``tables`` replaces the ``*.tests.csv`` files. Raises ``PolicyError`` when the
    policies do not load and :class:`PolicyTestError` for a malformed table. Decisions go
    through :meth:`PolicyEngine.authorize` (cache off unless ``engine`` has one), exactly as
    the API decides.
    """
    actions = dict(actions if actions is not None else api_actions())
    if engine is None:
        files = policy_files(directory)
        engine = PolicyEngine(actions, files, cache_size=0)
        sources = [name for name, _ in files]
    else:
        sources = ["the loaded policies"]
    found = tables if tables is not None else policy_test_files(directory)
    if not found:
        raise PolicyTestError(f"no *.tests.csv tables beside the policies in {directory}")
    report = PolicyTestReport(sources)
    for name, text in found:
        for case in parse_policy_tests(text, name, actions):
            failures: list[tuple[str, str]] = []
            example = ""
            names = _expand(case.action, actions)
            for action in names:
                decision = engine.authorize(case.principal, action, case.resource)
                example = example or decision.explanation
                if decision.allowed is not case.expected:
                    failures.append((action, decision.explanation))
            report.results.append(PolicyTestResult(case, len(names), tuple(failures), example))
    return report
