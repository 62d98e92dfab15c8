"""The validation gate a version passes before it enters production.

Every check runs (a report lists them all); the gate passes only if each one does:

* ``signature``: the candidate takes the champion's features and gives its outputs;
* ``governance``: a review approving the version is recorded (when required);
* ``holdout``: on a holdout of stored data, the alarm rate stays within the limit and
  within ``tolerance`` of the champion's on the same rows;
* ``latency``: the p99 compute time (thread CPU) of single-row predictions stays within
  the budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from trellis.ml.registry import ModelVersion
from trellis.ml.sessions import SessionCache
from trellis.ml.signature import compatibility_problems

__all__ = ["GateCheck", "GatePolicy", "GateReport", "run_gate"]


class GatePolicy(msgspec.Struct, frozen=True):
    """The limits the gate applies (from :class:`~trellis.core.config.MlSettings`)."""

    max_alarm_rate: float = 0.1
    tolerance: float = 0.02
    latency_budget_ms: float = 20.0
    min_holdout_rows: int = 50
    require_review: bool = False


class GateCheck(msgspec.Struct, frozen=True):
    """One check: its name, whether it passed, and the numbers behind it."""

    name: str
    passed: bool
    detail: str


class GateReport(msgspec.Struct, frozen=True):
    """All checks of one gate run."""

    model: str
    candidate: str
    champion: str | None
    passed: bool
    checks: list[GateCheck]
    metrics: dict[str, float]

    @property
    def failed(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if not c.passed]


def _alarm_rate(sessions: SessionCache, version: ModelVersion, x: Any) -> float:
    import numpy as np

    outputs = sessions.get(version.sha256).run(x)
    label = next((o.name for o in version.signature.outputs if o.kind == "label"), None)
    if label is None or label not in outputs:
        return 0.0
    return float(np.mean(np.asarray(outputs[label]).reshape(-1) == -1))


def run_gate(
    candidate: ModelVersion,
    champion: ModelVersion | None,
    holdout: Sequence[Sequence[float]],
    sessions: SessionCache,
    policy: GatePolicy,
) -> GateReport:
    """Run every check; the report says exactly which failed and why. A model that
    cannot be loaded or throws fails the gate (check ``runs``) instead of escaping."""
    try:
        return _run_gate(candidate, champion, holdout, sessions, policy)
    except Exception as exc:  # any failure of either model means "not promotable"
        check = GateCheck("runs", False, f"the model failed to run: {type(exc).__name__}: {exc}")
        return GateReport(
            candidate.name,
            candidate.version,
            None if champion is None else champion.version,
            False,
            [check],
            {},
        )


def _run_gate(
    candidate: ModelVersion,
    champion: ModelVersion | None,
    holdout: Sequence[Sequence[float]],
    sessions: SessionCache,
    policy: GatePolicy,
) -> GateReport:
    """Run every check; the report says exactly which failed and why."""
    import numpy as np

    checks: list[GateCheck] = []
    metrics: dict[str, float] = {}
    if champion is None:
        checks.append(
            GateCheck("signature", True, "no champion yet: nothing to be compatible with")
        )
    else:
        problems = compatibility_problems(champion.signature, candidate.signature)
        detail = "; ".join(problems) or f"compatible with {champion.version}"
        checks.append(GateCheck("signature", not problems, detail))
    approved = [r for r in candidate.reviews if r.get("decision") == "approved"]
    if policy.require_review:
        detail = (
            f"approved by {approved[-1]['reviewer']}"
            if approved
            else "no approving governance review is recorded for this version"
        )
        checks.append(GateCheck("governance", bool(approved), detail))
    else:
        checks.append(GateCheck("governance", True, "review not required by settings"))
    if len(holdout) < policy.min_holdout_rows:
        checks.append(
            GateCheck(
                "holdout",
                False,
                f"only {len(holdout)} holdout rows in stored data; need {policy.min_holdout_rows}",
            )
        )
    else:
        x = np.asarray(holdout, dtype=np.float32)
        rate = _alarm_rate(sessions, candidate, x)
        metrics["holdout_rows"] = float(len(x))
        metrics["holdout_alarm_rate"] = rate
        limit = policy.max_alarm_rate
        reason = f"alarm rate {rate:.3f} on {len(x)} holdout rows (limit {limit:.3f})"
        ok = rate <= limit
        if champion is not None and champion.signature.features == candidate.signature.features:
            base = _alarm_rate(sessions, champion, x)
            metrics["champion_alarm_rate"] = base
            ok = ok and rate <= base + policy.tolerance
            reason += f", champion {base:.3f} + tolerance {policy.tolerance:.3f}"
        checks.append(GateCheck("holdout", ok, reason))
    width = len(candidate.signature.features)
    row = np.asarray(holdout[:1], dtype=np.float32) if holdout else np.zeros((1, width), "float32")
    loaded = sessions.get(candidate.sha256)
    # The budget is the model's own compute: thread CPU time (sessions run on the calling
    # thread), so a busy neighbour on a shared host cannot fail a sound model. Wall time is
    # reported beside it for the operator.
    cpu_ms: list[float] = []
    wall_ms: list[float] = []
    for _ in range(50):
        started_cpu = time.thread_time()
        started = time.perf_counter()
        loaded.run(row)
        wall_ms.append((time.perf_counter() - started) * 1000)
        cpu_ms.append((time.thread_time() - started_cpu) * 1000)
    p99 = float(np.percentile(cpu_ms, 99))
    metrics["latency_p99_ms"] = p99
    metrics["latency_p99_wall_ms"] = float(np.percentile(wall_ms, 99))
    checks.append(
        GateCheck(
            "latency",
            p99 <= policy.latency_budget_ms,
            f"single-row p99 {p99:.2f} ms of compute (budget {policy.latency_budget_ms:.2f} ms)",
        )
    )
    passed = all(c.passed for c in checks)
    return GateReport(
        candidate.name,
        candidate.version,
        None if champion is None else champion.version,
        passed,
        checks,
        metrics,
    )
