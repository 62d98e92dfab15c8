"""Logging in with a real browser (Debian's chromium): the login page leads to the inbox, the
pages run under the strict CSP without a violation, and a POST without the CSRF token is
refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.auth.conftest import PASSWORD, Secured
from tests.ui.test_browser import browser  # the shared chromium fixture

__all__ = ["browser"]

pytestmark = pytest.mark.browser

PAGES = ("/", "/alerts/metrics", "/rules", "/flows/new", "/admin/users", "/admin/policies")


def test_login_page_to_inbox_and_csrf_refusal(browser: Browser, secured: Secured) -> None:
    """Log in through the form, land on the inbox, use htmx (Verify) and stay within the
    CSP; a fetch that omits the token is refused, the same fetch with it passes the guard."""
    violations: list[str] = []
    errors: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{secured.url}/alerts")
    expect(page).to_have_url(f"{secured.url}/login?next=%2Falerts")
    page.get_by_label("User name").fill("u-admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{secured.url}/alerts")
    expect(page.locator(".account")).to_contain_text("u-admin")

    page.goto(f"{secured.url}/admin/audit")
    page.locator("#verify-audit").click()  # htmx GET, with the token header from <body>
    expect(page.locator("#verify-status")).to_contain_text("Intact")
    for path in PAGES:
        page.goto(f"{secured.url}{path}")
        page.wait_for_load_state("networkidle")

    status = page.evaluate(
        "fetch('/ui/alerts/1/acknowledge', {method: 'POST'}).then(r => r.status)"
    )
    assert status == 403
    with_token = page.evaluate(
        """fetch('/ui/alerts/1/acknowledge', {method: 'POST', headers: {'X-CSRF-Token':
             document.querySelector('meta[name="csrf-token"]').content}}).then(r => r.status)"""
    )
    assert with_token == 404  # past the guard: there is no alert 1 in this empty fleet
    assert violations == []
    assert errors == []

    page.goto(f"{secured.url}/alerts")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{secured.url}/login")
    page.goto(f"{secured.url}/alerts")
    expect(page).to_have_url(f"{secured.url}/login?next=%2Falerts")
    context.close()
