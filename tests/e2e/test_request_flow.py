"""A person's path through the portal in headless Chromium: file, approve, see the grant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from exceptions.models import ExceptionRequest, Grant

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes around it are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            # Playwright's greenlet gives the test its own context, and with it
            # its own database connection: close it before the database is dropped.
            connections.close_all()
            chromium.close()


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_requester_files_and_approver_approves(
    browser: Any, live_server: Any, requester: Any, approver: Any, workload: Any, tmp_path: Any
) -> None:
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "alice")

    page.goto(f"{base}/requests/new/")
    page.select_option("select[name=workload]", str(workload.pk))
    page.select_option("select[name=purpose]", "partner_api")
    page.fill("textarea[name=justification]", "Settles card payments with the partner every night at 02:00.")
    page.fill("input[name='dest-0-host']", "192.168.0.1")
    # Live validation explains the IP literal before anything is submitted.
    page.wait_for_selector("text=IP address literal")
    page.fill("input[name='dest-0-host']", "API.Partner.Example")
    page.click("#add-destination")
    page.fill("input[name='dest-1-host']", "*.cdn.partner.example")
    page.wait_for_selector("#risk-summary .tier-medium")
    assert "30 days" in page.inner_text("#risk-summary")
    page.screenshot(path=str(tmp_path / "request-form.png"), full_page=True)
    page.click("button[name=submit]")
    page.wait_for_url("**/requests/*/")
    assert "Pending approval" in page.inner_text("h1")
    request = ExceptionRequest.objects.get()
    assert [d.host for d in request.destinations.all()] == ["api.partner.example", "*.cdn.partner.example"]
    context.close()

    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "bob")
    page.goto(f"{base}/approvals/")
    page.click(f"text=#{request.pk}")
    page.fill("#approve-reason", "Partner is on the vendor list.")
    page.click("button[name=approve]")
    page.wait_for_selector("text=2 grant(s) issued")
    assert "Active" in page.inner_text("h1")
    page.goto(f"{base}/grants/?view=active")
    body = page.inner_text("main")
    assert "api.partner.example:443/tcp" in body and "*.cdn.partner.example:443/tcp" in body
    context.close()
    assert Grant.objects.filter(status="active").count() == 2
