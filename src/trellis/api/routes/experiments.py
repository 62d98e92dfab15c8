"""Experiment reports: the A/B runs of ``trellis experiment run``, as data.

The HTML export is the dashboard's (``/experiments/{id}/report.html``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from trellis.api.deps import PlatformDep
from trellis.api.encoding import documented, json_response
from trellis.core.errors import NotFoundError
from trellis.sim.experiment import ExperimentReport
from trellis.sim.reports import ReportEntry, list_reports, load_report

__all__ = ["router"]

router = APIRouter(tags=["experiments"])


def _report(platform: PlatformDep, report_id: str) -> ExperimentReport:
    report = load_report(platform.settings.data_dir, report_id)
    if report is None:
        raise NotFoundError("experiment report", report_id)
    return report


@router.get("/experiments", responses=documented(list[ReportEntry]))
def experiments(platform: PlatformDep) -> Response:
    """Stored experiment reports, newest first."""
    return json_response(list_reports(platform.settings.data_dir))


@router.get("/experiments/{report_id}", responses=documented(ExperimentReport))
def experiment(report_id: str, platform: PlatformDep) -> Response:
    """One report: per-variant figures, per-seed scores, paired comparisons."""
    return json_response(_report(platform, report_id))
