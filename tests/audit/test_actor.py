"""The Actor value: who acted and how they proved it, recorded with every event."""

from __future__ import annotations

import time
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.verification import verify_chain
from exceptions.models import ExceptionRequest
from exceptions.tokens import create_token
from tests.approvals.conftest import enrol_mfa

pytestmark = pytest.mark.django_db


def totp(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def test_a_token_call_records_the_token_name_and_scopes_in_the_event(
    requester: Any, workload: Any, submit: Any
) -> None:
    exception_request: ExceptionRequest = submit()
    _, key = create_token(actor=requester, user=requester, name="jira", scopes=["requests:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post(
        f"/api/v1/requests/{exception_request.pk}/cancel/", {"reason": "Filed twice."}, format="json"
    )
    assert response.status_code == 200, response.json()
    event = AuditEvent.objects.get(action="request.cancelled")
    assert event.actor_kind == "token"
    assert event.context == {"via": "token", "token": "jira", "scopes": ["requests:write"]}
    assert verify_chain().ok


def test_a_session_after_an_mfa_sign_in_records_when_mfa_was_passed(requester: Any, submit: Any) -> None:
    secret = enrol_mfa(requester)
    requester.set_password("pw-for-the-test")
    requester.save()
    client = Client()
    client.post("/accounts/login/", {"login": requester.username, "password": "pw-for-the-test"})
    response = client.post("/accounts/2fa/authenticate/", {"code": totp(secret)})
    assert response.status_code == 302
    exception_request: ExceptionRequest = submit()
    response = client.post(f"/requests/{exception_request.pk}/cancel/", {"reason": "Filed twice."})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="request.cancelled")
    assert (event.actor_kind, event.context["via"]) == ("user", "session")
    assert "mfa_at" in event.context and "breakglass" not in event.context
    assert verify_chain().ok


def test_events_without_a_person_keep_an_empty_context_out_of_the_hash(submit: Any) -> None:
    submit()
    event = AuditEvent.objects.get(action="request.submitted")
    assert event.context == {}
    assert verify_chain().ok


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_with_actor_context_verifies_offline(
    client: Any, auditor: Any, requester: Any, submit: Any, tmp_path: Any, fmt: str
) -> None:
    from io import StringIO

    from django.core.management import call_command

    exception_request: ExceptionRequest = submit()
    _, key = create_token(actor=requester, user=requester, name="jira", scopes=["requests:write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    cancelled = api.post(f"/api/v1/requests/{exception_request.pk}/cancel/", {"reason": "Twice."}, format="json")
    assert cancelled.status_code == 200
    client.force_login(auditor)
    response = client.get(f"/audit/export/events.{fmt}")
    export = tmp_path / f"audit.{fmt}"
    export.write_bytes(b"".join(response.streaming_content))
    assert '"token": "jira"' in export.read_text() or '""token"": ""jira""' in export.read_text()
    out = StringIO()
    call_command("verify_audit", "--export", str(export), "--no-anchors", stdout=out, stderr=StringIO())
    assert "Audit chain intact: 3 events verified" in out.getvalue()
