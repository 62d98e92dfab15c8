"""Authorization as policy-as-code: Cedar policies from files, validated against a schema
built from the API's own operations, and the ONE function every decision goes through."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from trellis.auth.users import ROLES, SCOPES, Principal

__all__ = [
    "RESOURCE_TYPES",
    "Decision",
    "PolicyEngine",
    "PolicyError",
    "build_schema",
    "policy_files",
    "policy_locations",
    "read_policy_dir",
]

#: Resource types of the schema; the API authorises on the Tenant today (see docs/security.md).
_RESOURCES = {
    "Tenant": [],
    "Site": ["Tenant"],
    "Asset": ["Site", "Tenant"],
    "Device": ["Site", "Tenant"],
    "Rule": ["Tenant"],
    "Flow": ["Tenant"],
    "Model": ["Tenant"],
    "Alert": ["Tenant", "Site"],
    "Release": ["Tenant"],
    "UseCase": ["Tenant"],
}
_PRINCIPALS = ("User", "Service", "Device")
#: The resource types a policy (or a policy test) may name.
RESOURCE_TYPES = tuple(_RESOURCES)


class PolicyError(Exception):
    """A policy set that does not parse or does not validate against the schema."""


@dataclass(frozen=True, slots=True)
class Decision:
    """An answer and why: the policies that permitted it, or the reason for a deny."""

    allowed: bool
    reasons: tuple[str, ...]
    explanation: str


def build_schema(actions: Mapping[str, str]) -> dict[str, Any]:
    """The Cedar schema: principals, resources, action groups, one action per API operation."""
    tenant_attr = {"type": "Record", "attributes": {"tenant": {"type": "Entity", "name": "Tenant"}}}
    user_attrs = {
        "tenant": {"type": "Entity", "name": "Tenant"},
        "site": {"type": "Entity", "name": "Site", "required": False},
    }
    entity_types: dict[str, Any] = {
        "Role": {},
        "Team": {"memberOfTypes": ["Role"]},
        "User": {
            "memberOfTypes": ["Role", "Team"],
            "shape": {"type": "Record", "attributes": user_attrs},
        },
        "Service": {"memberOfTypes": ["Role"], "shape": tenant_attr},
    }
    for name, parents in _RESOURCES.items():
        entity_types.setdefault(name, {})["memberOfTypes"] = parents
    entity_types["Device"]["shape"] = tenant_attr
    entity_types["Device"]["memberOfTypes"] = ["Site", "Tenant", "Role"]
    applies = {"principalTypes": list(_PRINCIPALS), "resourceTypes": list(_RESOURCES)}
    schema_actions: dict[str, Any] = {group: {} for group in SCOPES}
    for action, group in actions.items():
        if group not in SCOPES:
            raise PolicyError(f"action {action!r} is in unknown group {group!r}")
        schema_actions[action] = {"memberOf": [{"id": group}], "appliesTo": applies}
    return {"": {"entityTypes": entity_types, "actions": schema_actions}}


def _default_policies() -> str:
    return resources.files("trellis.auth").joinpath("policies/default.cedar").read_text()


def policy_files(directory: Path | None) -> list[tuple[str, str]]:
    """(file name, text) of every ``*.cedar`` file of ``directory`` in name order, or of the
    built-in policies."""
    if directory is None:
        return [("default.cedar", _default_policies())]
    files = sorted(directory.glob("*.cedar"))
    if not files:
        raise PolicyError(f"no *.cedar files in {directory}")
    return [(f.name, f.read_text()) for f in files]


def read_policy_dir(directory: Path | None) -> str:
    """Every ``*.cedar`` file of ``directory`` in name order, or the built-in policies."""
    return "\n".join(text for _, text in policy_files(directory))


_ID = re.compile(r'@id\s*\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


def _statements(text: str) -> Iterator[tuple[int, str]]:
    """(first line, source) of each policy statement: split at top-level ``;`` outside
    strings and ``//`` comments, in the order Cedar numbers them (policy0, policy1, ...)."""
    start, line, first = 0, 1, 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if char == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\n":
                    line += 1
                i += 2 if text[i] == "\\" else 1
        elif char == "\n":
            line += 1
        elif char == ";":
            yield first or line, text[start : i + 1]
            start, first = i + 1, 0
        elif not char.isspace() and not first:
            first = line
        i += 1


def policy_locations(files: Sequence[tuple[str, str]]) -> list[str]:
    """Where each policy of the joined ``files`` is, by Cedar's policy index:
    ``'<@id or policyN> (<file>:<line>)'``, for explanations people can act on."""
    found: list[str] = []
    for name, text in files:
        for line, source in _statements(text):
            match = _ID.search(source)
            label = match.group(1) if match else f"policy{len(found)}"
            found.append(f"{label} ({name}:{line})")
    return found


class PolicyEngine:
    """Holds the validated policy set and answers through :meth:`authorize`.

    Decisions are cached by (principal, role, tenant, site, action, resource): everything a
    built-in decision depends on. The cache is dropped whenever policies are replaced.
    """

    def __init__(
        self,
        actions: Mapping[str, str],
        policies: str | Sequence[tuple[str, str]],
        cache_size: int = 65_536,
    ) -> None:
        self.actions = dict(actions)
        self._schema = json.dumps(build_schema(self.actions))
        self._parsed_schema = cedarpy.Schema.from_json_str(self._schema)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str, str | None, str, tuple[str, str]], Decision] = {}
        self._cache_size = cache_size
        self.text = ""
        self._policies: Any = None
        self._where: list[str] = []
        if isinstance(policies, str):
            self.load(policies)
        else:
            self.load_files(policies)

    def validate(self, policies: str) -> None:
        """Raise :class:`PolicyError` naming each problem when ``policies`` is not valid."""
        try:
            result = cedarpy.validate_policies(policies, self._schema)
        except Exception as exc:  # cedarpy raises ValueError on syntax errors
            raise PolicyError(f"policies do not parse: {exc}") from None
        if not result.validation_passed:
            problems = "; ".join(f"{e.policy_id}: {e.error}" for e in result.errors)
            raise PolicyError(f"policies do not validate against the schema: {problems}")

    def load(self, policies: str, files: Sequence[tuple[str, str]] | None = None) -> None:
        """Replace the policy set; a bad set is refused and the current one stays in force.

        ``files`` (name, text), whose texts joined by newlines are ``policies``, let
        explanations name the file and line of each policy."""
        self.validate(policies)
        parsed = cedarpy.PolicySet.from_str(policies)
        where = policy_locations(files if files is not None else [("policies", policies)])
        if len(where) != len(parsed.to_pst().static_policies):
            where = []  # a construct the splitter does not know: name policies by id only
        with self._lock:
            self.text, self._policies, self._where = policies, parsed, where
            self._cache.clear()

    def load_files(self, files: Sequence[tuple[str, str]]) -> None:
        """:meth:`load` the joined ``files`` (see :func:`policy_files`)."""
        self.load("\n".join(text for _, text in files), files)

    def where(self, policy_id: str) -> str:
        """``policy3`` as ``'operator (default.cedar:21)'``; the id itself when unknown."""
        index = policy_id.removeprefix("policy")
        if index.isdigit() and int(index) < len(self._where):
            return self._where[int(index)]
        return policy_id

    def authorize(self, principal: Principal, action: str, resource: tuple[str, str]) -> Decision:
        """THE authorization function: may ``principal`` do ``action`` on ``resource``?"""
        key = (principal.name, principal.role, principal.tenant, principal.site, action, resource)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = self._decide(principal, action, resource)
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            if self._cache_size:
                self._cache[key] = decision
        return decision

    def _decide(self, principal: Principal, action: str, resource: tuple[str, str]) -> Decision:
        if action not in self.actions:
            return Decision(False, (), f"unknown action {action!r}")
        if principal.role not in ROLES:
            return Decision(False, (), f"unknown role {principal.role!r}")
        rtype, rid = resource
        tenant = {"__entity": {"type": "Tenant", "id": principal.tenant}}
        attrs: dict[str, Any] = {"tenant": tenant}
        entities: list[dict[str, Any]] = [
            {"uid": {"type": "Tenant", "id": principal.tenant}, "attrs": {}, "parents": []},
        ]
        if principal.site is not None:
            # The principal's site is in its tenant, so tenant-wide policies still apply.
            attrs["site"] = {"__entity": {"type": "Site", "id": principal.site}}
            entities.append(
                {
                    "uid": {"type": "Site", "id": principal.site},
                    "attrs": {},
                    "parents": [{"type": "Tenant", "id": principal.tenant}],
                }
            )
        entities.append(
            {
                "uid": {"type": "User", "id": principal.name},
                "attrs": attrs,
                "parents": [{"type": "Role", "id": principal.role}],
            }
        )
        if (rtype, rid) not in (("Tenant", principal.tenant), ("Site", principal.site)):
            entities.append({"uid": {"type": rtype, "id": rid}, "attrs": {}, "parents": []})
        request = {
            "principal": f"User::{json.dumps(principal.name)}",
            "action": f"Action::{json.dumps(action)}",
            "resource": f"{rtype}::{json.dumps(rid)}",
            "context": {},
        }
        result = cedarpy.is_authorized(request, self._policies, entities, self._parsed_schema)
        reasons = tuple(result.diagnostics.reasons)
        named = ", ".join(self.where(r) for r in reasons)
        if result.allowed:
            return Decision(True, reasons, f"permitted by policy {named}")
        errors = "; ".join(str(e) for e in result.diagnostics.errors)
        why = f"forbidden by policy {named}" if reasons else "no policy permits it"
        return Decision(
            False,
            reasons,
            f"denied: {why} (role {principal.role!r} of tenant {principal.tenant!r}, "
            f"action {action!r} on {rtype} {rid!r})" + (f"; errors: {errors}" if errors else ""),
        )
