"""Experiment reports through the API and the dashboard of a running server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import msgspec
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.serving import serve
from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable
from trellis.api.app import create_app
from trellis.core.config import load_settings
from trellis.sim.experiment import load_experiment, run_experiment
from trellis.sim.report import render_report
from trellis.sim.reports import save_report
from trellis.ui import views

EXAMPLE = Path(__file__).parents[2] / "examples" / "experiments" / "threshold-vs-anomaly.toml"


def test_a_stored_report_is_listed_served_as_json_html_and_a_dashboard_page(
    tmp_path: Path,
) -> None:
    """GET /api/v1/experiments lists it; its JSON, the HTML export and the page are served."""
    experiment = load_experiment(EXAMPLE)
    experiment = msgspec.structs.replace(experiment, seeds=[1, 2], bootstrap=200)
    report = run_experiment(experiment)
    settings = load_settings(data_dir=tmp_path / "data")
    report_id = save_report(settings.data_dir, report)
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        listed = http.get("/api/v1/experiments").json()
        assert [(e["id"], e["seeds"]) for e in listed] == [(report_id, 2)]
        body = http.get(f"/api/v1/experiments/{report_id}").json()
        assert body["a"]["label"] == "A"
        assert {c["figure"] for c in body["comparisons"]} >= {
            "median lead time",
            "false alerts per asset-day",
        }
        export = http.get(f"/experiments/{report_id}/report.html")
        assert export.headers["content-type"].startswith("text/html")
        assert "echarts.init" in export.text
        assert http.get("/api/v1/experiments/nothing-1").status_code == 404
        page = http.get("/experiments")
        assert report.name in page.text
        detail = http.get(f"/experiments/{report_id}")
        assert '<script src="/static/vendor/echarts.min.js"></script>' in detail.text
        # Its inline script runs under the CSP: it carries this response's nonce.
        nonce = re.search(r"'nonce-([^']+)'", detail.headers["content-security-policy"])
        assert nonce
        assert f'<script nonce="{nonce.group(1)}">' in detail.text
        assert http.get("/experiments/nothing-1").status_code == 404


@pytest.mark.browser
def test_the_exported_report_draws_its_charts_in_a_browser(tmp_path: Path) -> None:
    """The self-contained HTML export opens from disk and draws one chart per figure."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing; install Debian's chromium package")
    if views.missing_assets():
        _unavailable("vendored JS is missing; run `make assets`")
    experiment = msgspec.structs.replace(load_experiment(EXAMPLE), seeds=[1, 2], bootstrap=200)
    report = run_experiment(experiment)
    page_file = tmp_path / "report.html"
    page_file.write_text(render_report(report))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            expect(page.locator("canvas")).to_have_count(len(report.comparisons))
            assert errors == []
        finally:
            browser.close()
