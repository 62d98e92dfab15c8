"""Authorization decisions/s through the one function, cold and cached, vs bare cedarpy.

Run ``python bench/policy.py [--quick] [--n N]``. Prints one JSON line per figure on
stdout (DESIGN.md, Benchmarks) and progress on stderr:

* ``decisions_per_s_cached``: :meth:`PolicyEngine.authorize` with the API's real action set
  and the built-in policies, over a working set of principals x actions already decided
  (the steady state of a server). Target: >= 20,000/s.
* ``decisions_per_s_cold``: the same calls with the cache disabled (every call builds the
  entities and asks Cedar).

Baseline for both: bare ``cedarpy.is_authorized`` with the policy set and schema parsed
once and the entity list built once, same requests, same run: Cedar's own limit here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import cedarpy

from _common import Report
from trellis.api import routes
from trellis.api.auth import operations
from trellis.auth.policy import PolicyEngine, build_schema, read_policy_dir
from trellis.auth.users import ROLES, SCOPES, Principal

BENCH = "policy"
REPORT = Report(BENCH)
BARE = "bare cedarpy.is_authorized, policies+schema parsed once, same run"
log = REPORT.log


def emit(figure: str, value: float, baseline_value: float, target: str, n: int) -> None:
    """A figure in decisions/s against the bare Cedar call."""
    REPORT.emit(figure, value, "decisions/s", BARE, baseline_value, target, n)


def main() -> None:
    """Measure bare Cedar, then the one function cold and cached, over the same requests."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer decisions (< 10 s)")
    parser.add_argument("--n", type=int, default=None, help="decisions per measurement")
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 200_000)
    actions = {op.action: op.group for op in operations(routes.router).values()}
    policies = read_policy_dir(None)
    principals = [
        Principal(f"user-{i}", "default", ROLES[i % len(ROLES)], frozenset(SCOPES), "bench")
        for i in range(60)
    ]
    requests = list(itertools.islice(itertools.cycle(itertools.product(principals, actions)), n))
    resource = ("Tenant", "default")

    schema = cedarpy.Schema.from_json_str(json.dumps(build_schema(actions)))
    policy_set = cedarpy.PolicySet.from_str(policies)
    bare = [
        (
            {
                "principal": f'User::"{p.name}"',
                "action": f'Action::"{a}"',
                "resource": 'Tenant::"default"',
                "context": {},
            },
            [
                {
                    "uid": {"type": "User", "id": p.name},
                    "attrs": {"tenant": {"__entity": {"type": "Tenant", "id": "default"}}},
                    "parents": [{"type": "Role", "id": p.role}],
                },
                {"uid": {"type": "Tenant", "id": "default"}, "attrs": {}, "parents": []},
            ],
        )
        for p, a in requests
    ]
    log(f"{len(actions)} actions, {len(principals)} principals, {n} decisions per run")
    for r, e in bare[:2000]:  # warm up: the first calls pay for lazy initialisation
        cedarpy.is_authorized(r, policy_set, e, schema)
    start = time.perf_counter()
    allowed_bare = sum(cedarpy.is_authorized(r, policy_set, e, schema).allowed for r, e in bare)
    bare_rate = n / (time.perf_counter() - start)
    log(f"bare cedarpy: {bare_rate:,.0f}/s")

    cold = PolicyEngine(actions, policies, cache_size=0)
    start = time.perf_counter()
    allowed_cold = sum(cold.authorize(p, a, resource).allowed for p, a in requests)
    cold_rate = n / (time.perf_counter() - start)
    log(f"authorize, cold: {cold_rate:,.0f}/s")

    cached = PolicyEngine(actions, policies)
    for p, a in requests[: len(principals) * len(actions)]:
        cached.authorize(p, a, resource)
    start = time.perf_counter()
    allowed_cached = sum(cached.authorize(p, a, resource).allowed for p, a in requests)
    cached_rate = n / (time.perf_counter() - start)
    log(f"authorize, cached: {cached_rate:,.0f}/s")
    if not allowed_bare == allowed_cold == allowed_cached:
        raise SystemExit(f"decisions differ: {allowed_bare} {allowed_cold} {allowed_cached}")

    emit("decisions_per_s_cached", cached_rate, bare_rate, ">= 20000 decisions/s", n)
    emit("decisions_per_s_cold", cold_rate, bare_rate, "close to bare Cedar", n)


if __name__ == "__main__":
    main()
