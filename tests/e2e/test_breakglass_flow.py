"""An on-call engineer enrols TOTP, steps up, breaks glass, then runs a drill, in Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from approvals.models import BreakGlassUse
from exceptions.models import Grant
from foundation.outbox.models import OutboxMessage
from tests.e2e.conftest import enrol_totp, fresh_code, log_in


def fill_form(page: Any, workload: Any, incident: str) -> None:
    page.select_option("select[name=workload]", str(workload.pk))
    page.fill("textarea[name=destinations]", "api.partner.example:443")
    page.fill("input[name=incident_ref]", incident)
    page.fill("textarea[name=reason]", "Partner failover endpoint needed to settle payments during the outage.")
    page.check("input[name=acknowledged]")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_enrol_totp_step_up_break_glass_and_drill(
    browser: Any, live_server: Any, requester: Any, workload: Any, security_officer: Any
) -> None:
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "alice")

    page.goto(f"{base}/approvals/break-glass/")
    assert "no authenticator enrolled" in page.inner_text("main")
    page.click("#enrol-mfa")
    secret, used = enrol_totp(page)

    page.goto(f"{base}/approvals/break-glass/")
    page.wait_for_url("**/2fa/reauthenticate/**")
    page.fill("input[name=code]", fresh_code(secret, used))
    page.click("main button[type=submit]")
    page.wait_for_url("**/approvals/break-glass/")
    fill_form(page, workload, "INC-9001")
    page.click("button[name=break_glass]")
    page.wait_for_url("**/approvals/break-glass/*/")
    assert page.is_visible("#breakglass-banner")
    use = BreakGlassUse.objects.get(drill=False)
    assert Grant.objects.filter(request=use.request, breakglass=True, status="active").count() == 1
    assert OutboxMessage.objects.filter(kind="bundle.publish.priority").count() == 1

    # The step-up is still fresh (5 minutes): the drill goes straight to its form.
    page.goto(f"{base}/approvals/break-glass/drill/")
    assert "DRILL" in page.inner_text("main")
    fill_form(page, workload, "DRILL-1")
    page.click("button[name=break_glass]")
    page.wait_for_url("**/approvals/break-glass/*/")
    drill = BreakGlassUse.objects.get(drill=True)
    assert drill.request is None and Grant.objects.count() == 1
    assert OutboxMessage.objects.filter(kind="bundle.publish.priority").count() == 1
    page.goto(f"{base}/approvals/break-glass/drills/")
    assert workload.team.name in page.inner_text("main") and "Last practised" in page.inner_text("main")
    context.close()
