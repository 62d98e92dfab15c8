"""Dashboard pages for experiment reports: the list, and each report with its charts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from trellis.api.deps import PlatformDep
from trellis.sim.report import render_report
from trellis.sim.reports import list_reports, load_report

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/experiments", response_class=HTMLResponse)
async def experiments_page(request: Request, platform: PlatformDep) -> HTMLResponse:
    """Stored experiment reports, newest first."""
    from trellis.ui.routes import templates  # routes mounts this router

    entries = list_reports(platform.settings.data_dir)
    return templates.TemplateResponse(request, "experiments.html", {"entries": entries})


@router.get("/experiments/{report_id}", response_class=HTMLResponse)
async def experiment_page(report_id: str, request: Request, platform: PlatformDep) -> HTMLResponse:
    """One report: tables, verdicts and per-seed charts (ECharts from /static)."""
    report = load_report(platform.settings.data_dir, report_id)
    if report is None:
        from trellis.ui.routes import templates

        return templates.TemplateResponse(
            request, "not_found.html", {"message": f"No experiment report {report_id!r}."}, 404
        )
    nonce = getattr(request.state, "csp_nonce", "")  # set by ui.auth.SecurityHeaders
    return HTMLResponse(render_report(report, inline_echarts=False, nonce=nonce))


@router.get("/experiments/{report_id}/report.html", response_class=HTMLResponse)
async def experiment_export(report_id: str, platform: PlatformDep) -> HTMLResponse:
    """The report as one self-contained HTML file (ECharts inlined), for download."""
    report = load_report(platform.settings.data_dir, report_id)
    if report is None:
        return HTMLResponse(f"No experiment report {report_id!r}.", status_code=404)
    return HTMLResponse(
        render_report(report),
        headers={"Content-Disposition": f'attachment; filename="{report_id}.html"'},
    )
