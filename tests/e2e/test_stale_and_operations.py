"""In headless Chromium: an owner keeps a stale grant; security retries a parked side effect."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from approvals.services import approve_request
from audit.models import AuditEvent
from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.services import enqueue
from tests.e2e.conftest import log_in
from tests.traffic.conftest import flow, gateway, gateway_and_token, report  # noqa: F401 - fixtures
from traffic.models import StaleNotice
from traffic.services.stale import sweep_stale_grants


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_owner_keeps_a_stale_grant_and_security_retries_a_parked_mail(
    browser: Any,
    live_server: Any,
    gateway: Any,  # noqa: F811
    submit: Any,
    approver: Any,
    requester: Any,
    security_officer: Any,
    settings: Any,
) -> None:
    settings.EGRESS_STALE_DAYS_BY_TIER = {"low": 10, "medium": 10, "high": 10}
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=30)), now=now - timedelta(days=12))
    for at in (now - timedelta(days=11), now - timedelta(hours=1)):
        report(gateway, flow(grant.identity, "elsewhere.example", 443, "deny", at), now=at)
    assert sweep_stale_grants(now=now).noticed == 1

    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/grants/{grant.pk}/")
    assert "will be revoked on" in page.inner_text("main")
    page.fill("#keep-reason", "Year-end close runs once a year.")
    page.click("button[name=keep]")
    page.wait_for_selector("text=clock restarts now")
    assert StaleNotice.objects.get().status == "kept"
    page.goto(f"{live_server.url}/workloads/{grant.workload_id}/traffic/")
    page.click("text=Request access")
    page.wait_for_url("**/requests/new/**")
    assert page.input_value("input[name='dest-0-host']") == "elsewhere.example"
    context.close()

    with transaction.atomic():
        parked = enqueue(kind="mail", payload={"to": ["x@example.org"]}, idempotency_key="broken")
    OutboxMessage.objects.filter(pk=parked.pk).update(status=OutboxStatus.PARKED, last_error="SMTP 550 no such user")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server.url, "sec")
    page.goto(f"{live_server.url}/operations/")
    assert "SMTP 550 no such user" in page.inner_text("main")
    page.click("button[name=retry]")
    page.wait_for_selector("text=1 parked side effect(s) queued again")
    context.close()
    parked.refresh_from_db()
    assert parked.status == OutboxStatus.PENDING
    assert AuditEvent.objects.filter(action="outbox.retried", actor_id=security_officer.pk).exists()
