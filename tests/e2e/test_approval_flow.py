"""A high-risk production request through two approvals, a change window and the activation job, in Chromium."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from approvals import reference
from approvals.models import Decision
from approvals.services import activate_due_requests
from audit.models import AuditEvent
from audit.services import SYSTEM
from exceptions.models import ExceptionRequest, Grant
from tests.approvals.conftest import enrol_mfa
from tests.e2e.conftest import PASSWORD, enrol_totp, fresh_code


def log_in(page: Any, base: str, username: str, totp_secret: str | None = None) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    if totp_secret:
        page.wait_for_selector("input[name=code]")
        page.fill("input[name=code]", format_hotp_value(hotp_value(totp_secret, int(time.time()) // 30)))
        page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/" not in url)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_high_risk_production_request_needs_team_and_security_then_goes_live_in_the_window(
    browser: Any,
    live_server: Any,
    requester: Any,
    approver: Any,
    security_officer: Any,
    prod_workload: Any,
    tmp_path: Any,
) -> None:
    bob_secret, sec_secret = enrol_mfa(approver), enrol_mfa(security_officer)
    # A daily production window two hours from now (Europe/Berlin wall clock), so the request waits for it.
    berlin = ZoneInfo("Europe/Berlin")
    opens = (datetime.now(UTC) + timedelta(hours=2)).astimezone(berlin).replace(second=0, microsecond=0)
    reference.save_change_window(
        actor=SYSTEM,
        name="Daily production window",
        environments=["prod"],
        rrule="FREQ=DAILY",
        first_start_local=opens.replace(tzinfo=None) - timedelta(days=7),
        duration=timedelta(hours=1),
        time_zone="Europe/Berlin",
    )
    base = live_server.url

    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "alice")
    page.goto(f"{base}/requests/new/")
    page.select_option("select[name=workload]", str(prod_workload.pk))
    page.select_option("select[name=purpose]", "partner_api")
    page.select_option("select[name=data_class]", "confidential")
    page.fill("textarea[name=justification]", "Sends settlement files with card data to the partner every night.")
    page.fill("input[name='lifetime_value']", "5")
    page.fill("input[name='dest-0-host']", "settle.partner.example")
    page.wait_for_selector("#go-live-preview")
    assert "high-risk-production" in page.inner_text("#approval-preview")
    assert "Daily production window" in page.inner_text("#go-live-preview")
    assert re.search(r"goes live \w{3} \d{4}-\d\d-\d\d \d\d:\d\d UTC \(", page.inner_text("#go-live-preview"))
    page.click("button[name=submit]")
    page.wait_for_url("**/requests/*/")
    request = ExceptionRequest.objects.get()
    assert request.risk_tier == "high"
    assert "team approver and security officer missing" in page.inner_text("#approval-missing")
    context.close()

    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "bob", bob_secret)
    page.goto(f"{base}/approvals/")
    page.click(f"text=#{request.pk}")
    page.fill("#approve-reason", "Partner is on the vendor list.")
    page.click("button[name=approve]")
    page.click("button[name=confirm_approve]")  # high risk asks for confirmation
    page.wait_for_selector("text=security officer missing")
    page.screenshot(path=str(tmp_path / "after-team-approval.png"), full_page=True)
    assert "Pending approval" in page.inner_text("h1")
    assert "Approved so far by bob" in page.inner_text("#approvals-so-far")
    assert page.locator("#approved-by").count() == 0  # not approved yet: one of two approvals
    context.close()

    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "sec", sec_secret)
    page.goto(f"{base}/approvals/")
    page.click(f"text=#{request.pk}")
    page.click("button[name=approve]")
    page.click("button[name=confirm_approve]")
    page.wait_for_selector("text=1 grant(s) issued")
    context.close()

    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "alice")
    page.goto(f"{base}/requests/{request.pk}/")
    assert "Approved (scheduled)" in page.inner_text("h1")
    scheduled = page.inner_text("#scheduled-for")
    assert opens.strftime("%Y-%m-%d %H:%M") in scheduled or opens.astimezone(UTC).strftime("%H:%M") in scheduled
    assert "Approved by bob" in page.inner_text("#approved-by") and "sec" in page.inner_text("#approved-by")
    page.screenshot(path=str(tmp_path / "scheduled.png"), full_page=True)

    [grant] = Grant.objects.all()
    assert grant.status == "scheduled" and grant.valid_from == opens.astimezone(UTC)
    assert grant.expires_at - grant.valid_from == timedelta(days=5)  # the lifetime starts at activation
    assert activate_due_requests(now=grant.valid_from + timedelta(minutes=1)) == 1
    page.reload()
    assert "Active" in page.inner_text("h1")
    context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_mfa_rule_asks_for_a_step_up_at_the_decision_and_again_once_it_is_stale(
    browser: Any, live_server: Any, settings: Any, submit: Any, approver: Any
) -> None:
    # Restricted data in staging: rule high-risk (team and security officer, MFA at the decision).
    first, second = (submit(data_class="restricted", lifetime=timedelta(days=5)) for _ in range(2))
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "bob")  # no authenticator yet: password only, no MFA in this session

    # Enrol TOTP in the browser (allauth asks for the password first).
    page.goto(f"{base}/accounts/2fa/totp/activate/")
    secret, used = enrol_totp(page)

    # Approve: rule high-risk needs MFA at the decision, so the portal asks for a code first.
    page.goto(f"{base}/requests/{first.pk}/")
    assert "MFA at the decision" in page.inner_text("#approval")
    page.fill("#approve-reason", "Partner is on the vendor list.")
    page.click("button[name=approve]")
    page.wait_for_url("**/2fa/reauthenticate/**")
    assert not Decision.objects.exists()
    page.fill("input[name=code]", fresh_code(secret, used))
    page.click("main button[type=submit]")
    page.wait_for_url(f"**/approvals/{first.pk}/approve/after-step-up/")
    assert "MFA step-up passed" in page.inner_text("#step-up-passed")
    assert page.input_value("#decide-again-reason") == "Partner is on the vendor list."
    page.click("button[name=decide_again]")
    page.wait_for_selector("text=security officer missing")
    decision = Decision.objects.get()
    assert (decision.request_id, decision.actor_id, decision.counts_for) == (first.pk, approver.pk, "owning-team")
    event = AuditEvent.objects.get(action="request.approval_added")
    assert event.after["via"] == "session" and event.after["mfa_at"] is not None
    assert "Approved so far by bob" in page.inner_text("#approvals-so-far")

    # A shorter window: the step-up just given is stale by the next decision, which asks again.
    settings.EGRESS_STEP_UP_SECONDS = 2
    time.sleep(3)
    page.goto(f"{base}/requests/{second.pk}/")
    page.click("button[name=approve]")
    page.wait_for_url("**/2fa/reauthenticate/**")
    assert Decision.objects.filter(request=second).count() == 0
    page.fill("input[name=code]", fresh_code(secret, used))
    page.click("main button[type=submit]")
    page.wait_for_url(f"**/approvals/{second.pk}/approve/after-step-up/")
    page.click("button[name=decide_again]")
    page.wait_for_selector("text=security officer missing")
    assert Decision.objects.filter(request=second, actor=approver).count() == 1
    context.close()
