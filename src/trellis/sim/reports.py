"""Experiment reports kept as files under ``{data_dir}/experiments/``: one JSON per run.

Files rather than metadata tables: a report is written once and read whole, and the
files can be archived or diffed as they are.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from trellis.core.clock import now_ms
from trellis.sim.experiment import ExperimentReport

__all__ = ["ReportEntry", "list_reports", "load_report", "save_report"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")


class ReportEntry(msgspec.Struct, frozen=True):
    """A stored report, as the list shows it."""

    id: str
    name: str
    scenario: str
    seeds: int
    created_ms: int


class _Stored(msgspec.Struct, frozen=True):
    created_ms: int
    report: ExperimentReport


def _folder(data_dir: Path) -> Path:
    return data_dir / "experiments"


def save_report(data_dir: Path, report: ExperimentReport) -> str:
    """Store ``report``; returns its id (a slug of the name and the time)."""
    created = now_ms()
    slug = re.sub(r"[^a-z0-9]+", "-", report.name.lower()).strip("-")[:60] or "experiment"
    report_id = f"{slug}-{created}"
    folder = _folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report_id}.json"
    path.write_bytes(msgspec.json.encode(_Stored(created, report)))
    return report_id


def list_reports(data_dir: Path) -> list[ReportEntry]:
    """Every stored report, newest first."""
    entries: list[ReportEntry] = []
    for path in _folder(data_dir).glob("*.json"):
        stored = msgspec.json.decode(path.read_bytes(), type=_Stored)
        r = stored.report
        entries.append(ReportEntry(path.stem, r.name, r.scenario, len(r.seeds), stored.created_ms))
    return sorted(entries, key=lambda e: e.created_ms, reverse=True)


def load_report(data_dir: Path, report_id: str) -> ExperimentReport | None:
    """The stored report ``report_id``, or None when there is none (or the id is malformed)."""
    if not _ID.match(report_id):
        return None
    path = _folder(data_dir) / f"{report_id}.json"
    if not path.is_file():
        return None
    return msgspec.json.decode(path.read_bytes(), type=_Stored).report
