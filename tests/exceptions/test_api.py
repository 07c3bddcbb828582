from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from exceptions.models import ExceptionRequest
from tests.api_problems import field_errors, problem

pytestmark = pytest.mark.django_db


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _payload(workload: Any, **overrides: Any) -> dict[str, Any]:
    body = {
        "workload": workload.pk,
        "destinations": [{"host": "api.partner.example", "port": 443}],
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "ticket_ref": "JIRA-42",
        "lifetime_hours": 48,
    }
    body.update(overrides)
    return body


def test_ticketing_tool_files_and_approver_approves(requester: Any, approver: Any, workload: Any) -> None:
    created = api(requester).post("/api/v1/requests/", _payload(workload), format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["status"], body["risk_tier"], body["lifetime_hours"]) == ("pending", "low", 48)
    approved = api(approver).post(f"/api/v1/requests/{body['id']}/approve/", {"reason": "ok"}, format="json")
    assert approved.status_code == 200
    assert approved.json()["status"] == "active"
    assert [g["host"] for g in approved.json()["grants"]] == ["api.partner.example"]
    grants = api(requester).get("/api/v1/grants/?view=active").json()
    assert grants["count"] == 1


def test_validation_errors_name_the_field(requester: Any, workload: Any) -> None:
    response = api(requester).post(
        "/api/v1/requests/", _payload(workload, destinations=[{"host": "*.com", "port": 443}]), format="json"
    )
    assert "public suffix" in field_errors(response)["destinations[0].host"][0]
    assert ExceptionRequest.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_outsider_gets_404_and_approval_of_own_request_403(
    requester: Any, outsider: Any, workload: Any, team: Any
) -> None:
    from tests.factories import ApproverGroupFactory

    ApproverGroupFactory(teams=[team], members=[requester])
    request_id = api(requester).post("/api/v1/requests/", _payload(workload), format="json").json()["id"]
    assert api(outsider).get(f"/api/v1/requests/{request_id}/").status_code == 404
    assert api(outsider).get("/api/v1/requests/").json()["results"] == []
    own = api(requester).post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
    assert "Separation of duties" in problem(own, 403)["detail"]


def test_illegal_transition_is_a_409(requester: Any, approver: Any, workload: Any) -> None:
    request_id = api(requester).post("/api/v1/requests/", _payload(workload), format="json").json()["id"]
    api(requester).post(f"/api/v1/requests/{request_id}/cancel/", {}, format="json")
    response = api(approver).post(f"/api/v1/requests/{request_id}/approve/", {}, format="json")
    body = problem(response, 409)
    assert body["code"] == "illegal_transition" and "cancelled" in body["detail"]


def test_anonymous_calls_are_refused_with_a_bearer_challenge() -> None:
    response = APIClient().get("/api/v1/requests/")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_openapi_schema_is_served_to_signed_in_users_only(requester: Any) -> None:
    assert APIClient().get("/api/v1/schema/").status_code == 401
    response = api(requester).get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/requests/{id}/approve/" in response.content


def test_a_renewal_names_the_grant_it_extends(requester: Any, approver: Any, workload: Any, outsider: Any) -> None:
    first = api(requester).post("/api/v1/requests/", _payload(workload), format="json").json()
    grant_id = (
        api(approver).post(f"/api/v1/requests/{first['id']}/approve/", {}, format="json").json()["grants"][0]["id"]
    )
    renewal = api(requester).post("/api/v1/requests/", _payload(workload, renews=grant_id), format="json")
    assert renewal.status_code == 201
    assert ExceptionRequest.objects.get(pk=renewal.json()["id"]).renews_id == grant_id
    other_team_workload = api(outsider).post("/api/v1/requests/", _payload(workload, renews=grant_id), format="json")
    # Another team's workload gets the answer an unknown id gets.
    unknown = api(outsider).post("/api/v1/requests/", {**_payload(workload), "workload": 10**9}, format="json")
    assert field_errors(other_team_workload)["workload"] == field_errors(unknown)["workload"]
