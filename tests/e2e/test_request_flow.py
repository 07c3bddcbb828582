"""A person's path through the portal in headless Chromium: file, approve, see the grant."""

from __future__ import annotations

from typing import Any

import pytest

from exceptions.models import ExceptionRequest, Grant
from tests.e2e.conftest import log_in


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
