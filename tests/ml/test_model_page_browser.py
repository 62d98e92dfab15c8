"""The model page in a real browser: the comparison and drift charts draw."""

from __future__ import annotations

import random

import httpx
import pytest
from playwright.sync_api import expect

from tests.ml.conftest import train
from tests.serving import serve
from tests.ui.test_browser import browser  # noqa: F401  (the fixture)
from trellis.api.app import create_app
from trellis.ml import RoutingMode, RoutingPolicy
from trellis.platform import Platform

pytestmark = pytest.mark.browser


def test_model_page_draws_comparison_and_drift(platform: Platform, browser) -> None:  # noqa: F811
    """With v1 serving and v2 in shadow, the page's score chart and drift histograms
    render as canvases and the versions table lists both versions, without JS errors."""
    models = platform.models
    models.register_trained("default", "pump-anomaly", "1.0.0", train(platform), "ci")
    models.promote("default", "pump-anomaly", "1.0.0", "alice")
    models.register_trained("default", "pump-anomaly", "2.0.0", train(platform, seed=3), "ci")
    models.set_routing("default", "pump-anomaly", RoutingPolicy(RoutingMode.SHADOW, "2.0.0"))
    rng = random.Random(0)
    rows = [
        {
            "features": {
                "temperature": rng.gauss(62, 1),
                "vibration": rng.gauss(2.2, 0.1),
                "pressure": rng.gauss(4.1, 0.1),
            }
        }
        for _ in range(100)
    ]
    with serve(create_app(platform.settings)) as url:
        # Through the server: its drift windows are what the page shows.
        predicted = httpx.post(f"{url}/api/v1/models/pump-anomaly:predict", json={"rows": rows})
        assert predicted.status_code == 200, predicted.text
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/models/pump-anomaly")
        expect(page.locator("#versions-table")).to_contain_text("2.0.0")
        expect(page.locator("#m-routing")).to_contain_text("shadow")
        expect(page.locator("#chart-scores canvas")).to_have_count(1)
        expect(page.locator("#chart-drift canvas")).to_have_count(1)
        expect(page.locator("#drift-table")).to_contain_text("vibration")
        page.close()
    assert errors == []
