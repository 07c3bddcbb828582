"""Scoped integration tokens for ticketing tools."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from rest_framework.test import APIClient

from audit.models import AuditEvent
from exceptions.models import ExceptionRequest
from exceptions.tokens import create_token, revoke_token
from tests.api_problems import problem

pytestmark = pytest.mark.django_db


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def payload(workload: Any) -> dict[str, Any]:
    return {
        "workload": workload.pk,
        "destinations": [{"host": "api.partner.example", "port": 443}],
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Filed by the ticketing tool for change CHG-42 on behalf of the team.",
        "ticket_ref": "CHG-42",
        "lifetime_hours": 24,
    }


def test_a_token_files_a_request_and_the_audit_log_names_the_token(requester: Any, workload: Any) -> None:
    token, key = create_token(actor=requester, user=requester, name="jira", scopes=["requests:write", "requests:read"])
    assert key.startswith("egp_") and token.key_hash not in key
    response = bearer(key).post("/api/v1/requests/", payload(workload), format="json")
    assert response.status_code == 201, response.json()
    event = AuditEvent.objects.get(action="request.submitted")
    assert (event.actor_kind, event.actor_label, event.actor_id) == ("token", "alice via token jira", requester.pk)
    assert [r["id"] for r in bearer(key).get("/api/v1/requests/").json()["results"]] == [response.json()["id"]]


def test_a_token_is_limited_to_its_scopes_and_its_users_rights(requester: Any, workload: Any) -> None:
    _, key = create_token(actor=requester, user=requester, name="reader", scopes=["requests:read"])
    refused = bearer(key).post("/api/v1/requests/", payload(workload), format="json")
    assert "requests:write" in problem(refused, 403)["detail"]
    assert bearer(key).get("/api/v1/grants/").status_code == 403  # no grants:read
    assert ExceptionRequest.objects.count() == 0


def test_a_decide_token_still_obeys_separation_of_duties(
    requester: Any, approver: Any, workload: Any, submit: Any
) -> None:
    request = submit()
    _, own = create_token(actor=requester, user=requester, name="self", scopes=["requests:decide"])
    assert bearer(own).post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json").status_code == 403
    _, key = create_token(actor=approver, user=approver, name="bot", scopes=["requests:decide"])
    assert bearer(key).post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json").status_code == 200


def test_revoked_expired_and_unknown_tokens_are_refused(requester: Any) -> None:
    token, key = create_token(actor=requester, user=requester, name="old", scopes=["requests:read"])
    assert bearer(key).get("/api/v1/requests/").status_code == 200
    revoke_token(actor=requester, token=token, reason="rotated")
    assert bearer(key).get("/api/v1/requests/").status_code == 401
    _, expired = create_token(
        actor=requester, user=requester, name="short", scopes=["requests:read"], lifetime=timedelta(seconds=-1)
    )
    assert bearer(expired).get("/api/v1/requests/").status_code == 401
    assert bearer(key[:-2] + "xx").get("/api/v1/requests/").status_code == 401
    assert [e.action for e in AuditEvent.objects.order_by("seq")] == ["token.created", "token.revoked", "token.created"]


def test_bad_scopes_are_refused_with_the_list(requester: Any) -> None:
    with pytest.raises(ValidationError) as info:
        create_token(actor=requester, user=requester, name="x", scopes=["everything"])
    assert "requests:read" in info.value.message_dict["scopes"][0]


def test_management_command_prints_the_key_once(requester: Any, workload: Any) -> None:
    out = StringIO()
    call_command("create_api_token", "--user", "alice", "--name", "servicenow", "--scope", "requests:read", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert bearer(key).get("/api/v1/requests/").status_code == 200
