"""What every benchmark script shares: progress for the human on stderr, and each figure
as one JSON line on stdout in the DESIGN.md Benchmarks format (value beside the raw limit
of the same machine in the same run, as a ratio)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["Report"]


class Report:
    """The output of one benchmark script: ``log`` for progress, ``emit`` for figures."""

    def __init__(self, bench: str) -> None:
        self.bench = bench

    def log(self, message: str) -> None:
        """Progress for the human watching; stdout stays JSON only."""
        print(f"[{self.bench}] {message}", file=sys.stderr, flush=True)

    def emit(
        self,
        figure: str,
        value: float,
        unit: str,
        baseline: str,
        baseline_value: float,
        target: str,
        n: int,
        *,
        digits: int = 1,
        **extra: Any,
    ) -> None:
        """One figure as one JSON line on stdout; ``extra`` adds fields after the standard
        ones (say, a second baseline)."""
        line = {
            "bench": self.bench,
            "figure": figure,
            "value": round(value, digits),
            "unit": unit,
            "baseline": baseline,
            "baseline_value": round(baseline_value, digits),
            "ratio": round(value / baseline_value, 3) if baseline_value else None,
            "target": target,
            "n": n,
            "machine": f"{os.cpu_count()} cores",
            **extra,
        }
        print(json.dumps(line), flush=True)

    def emit_readings(
        self,
        figure: str,
        value: float,
        baseline: str,
        baseline_value: float,
        target: str,
        n: int,
        **extra: Any,
    ) -> None:
        """A figure in readings/s (the unit of most ingest and contract figures)."""
        self.emit(figure, value, "readings/s", baseline, baseline_value, target, n, **extra)
