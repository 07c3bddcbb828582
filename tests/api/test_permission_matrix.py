"""Who may call what: every main endpoint by every kind of caller, each on fresh data.

Callers: the requester, a teammate, the team's approver, an approver of another
team only, a security officer, an auditor, an outsider, integration tokens with
one scope each, and nobody. 404 means the caller may not know the object exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from approvals.services import approve_request
from exceptions.services.requests import submit_request
from exceptions.tokens import create_token
from tests.factories import ApproverGroupFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Settles card payments with the partner every night at 02:00."


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {pending}, {grant} are filled from the world
    body: dict[str, Any] | None = None


CALLS = {
    "list_requests": Call("get", "/api/v1/requests/"),
    "read_request": Call("get", "/api/v1/requests/{pending}/"),
    "file_request": Call(
        "post",
        "/api/v1/requests/",
        {
            "workload": "{workload}",
            "destinations": [{"host": "api.partner.example", "port": 443}],
            "purpose": "partner_api",
            "data_class": "internal",
            "justification": JUSTIFICATION,
            "lifetime_hours": 24,
        },
    ),
    "approve": Call("post", "/api/v1/requests/{pending}/approve/", {}),
    "reject": Call("post", "/api/v1/requests/{pending}/reject/", {"reason": "Use the proxy instead."}),
    "cancel": Call("post", "/api/v1/requests/{pending}/cancel/", {}),
    "comment": Call("post", "/api/v1/requests/{pending}/comments/", {"body": "Which port?"}),
    "read_grant": Call("get", "/api/v1/grants/{grant}/"),
    "revoke": Call("post", "/api/v1/grants/{grant}/revoke/", {"reason": "Incident 12"}),
    "list_webhooks": Call("get", "/api/v1/webhooks/"),
}

# Expected status per caller (columns) and call (rows).
CALLERS = ["requester", "teammate", "approver", "other_approver", "security", "auditor", "outsider", "anonymous"]
EXPECTED: dict[str, tuple[int, ...]] = {
    #                requester teammate approver other_appr security auditor outsider anonymous
    "list_requests": (200, 200, 200, 200, 200, 200, 200, 401),
    "read_request": (200, 200, 200, 404, 200, 200, 404, 401),
    "file_request": (201, 201, 400, 400, 400, 400, 400, 401),
    "approve": (403, 403, 200, 404, 403, 403, 404, 401),
    "reject": (403, 403, 200, 404, 403, 403, 404, 401),
    "cancel": (200, 200, 403, 404, 200, 403, 404, 401),
    "comment": (201, 201, 201, 404, 201, 403, 404, 401),
    "read_grant": (200, 200, 200, 404, 200, 200, 404, 401),
    "revoke": (200, 200, 200, 404, 200, 403, 404, 401),
    "list_webhooks": (403, 403, 403, 403, 403, 403, 403, 401),
}
MATRIX = [(call, caller, EXPECTED[call][i]) for call in CALLS for i, caller in enumerate(CALLERS)]


@pytest.fixture
def world(
    requester: Any, teammate: Any, approver: Any, security_officer: Any, auditor: Any, outsider: Any, workload: Any
) -> dict[str, Any]:
    elsewhere = TeamFactory(name="Data", slug="data")
    other_approver = UserFactory(username="olga")
    ApproverGroupFactory(name="Data approvers", teams=[elsewhere], members=[other_approver])

    def filed() -> Any:
        return submit_request(
            actor=requester,
            workload=workload,
            destinations=[{"host": "api.partner.example", "port": 443}],
            purpose="partner_api",
            data_class="internal",
            justification=JUSTIFICATION,
            lifetime=timedelta(hours=24),
        )

    (grant,) = approve_request(actor=approver, request=filed(), reason="ok")
    return {
        "people": {
            "requester": requester,
            "teammate": teammate,
            "approver": approver,
            "other_approver": other_approver,
            "security": security_officer,
            "auditor": auditor,
            "outsider": outsider,
        },
        "ids": {"pending": filed().pk, "grant": grant.pk, "workload": workload.pk},
    }


def _fill(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        for name, pk in ids.items():
            if value == f"{{{name}}}":
                return pk
            value = value.replace(f"{{{name}}}", str(pk))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _send(client: APIClient, call: Call, ids: dict[str, int]) -> Any:
    path = _fill(call.path, ids)
    if call.method == "get":
        return client.get(path)
    return client.post(path, _fill(call.body, ids), format="json")


@pytest.mark.parametrize(("call", "caller", "status"), MATRIX, ids=[f"{c}-{p}" for c, p, _ in MATRIX])
def test_permission_matrix(world: dict[str, Any], call: str, caller: str, status: int) -> None:
    client = APIClient()
    if caller != "anonymous":
        client.force_authenticate(world["people"][caller])
    response = _send(client, CALLS[call], world["ids"])
    assert response.status_code == status, response.content[:300]
    if status >= 400:
        assert response["Content-Type"].startswith("application/problem+json")


# A token acts as its user within its scopes: the requester's token per scope.
SCOPED = {
    "requests:read": {"list_requests": 200, "read_request": 200, "file_request": 403, "cancel": 403, "read_grant": 403},
    "requests:write": {"list_requests": 403, "file_request": 201, "cancel": 200, "comment": 201, "revoke": 403},
    "grants:read": {"read_grant": 200, "read_request": 403, "revoke": 403},
    "grants:revoke": {"revoke": 200, "read_grant": 403, "cancel": 403},
    "requests:decide": {"approve": 403, "read_request": 403},  # scope is there; separation of duties still refuses
    "explain": {"list_requests": 403, "file_request": 403},
    "webhooks:manage": {"list_webhooks": 403, "read_request": 403},  # scope alone does not make an admin
}
TOKEN_MATRIX = [(scope, call, status) for scope, calls in SCOPED.items() for call, status in calls.items()]


@pytest.mark.parametrize(("scope", "call", "status"), TOKEN_MATRIX, ids=[f"{s}-{c}" for s, c, _ in TOKEN_MATRIX])
def test_token_scope_matrix(world: dict[str, Any], scope: str, call: str, status: int) -> None:
    requester = world["people"]["requester"]
    _, key = create_token(actor=requester, user=requester, name="tool", scopes=[scope])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = _send(client, CALLS[call], world["ids"])
    assert response.status_code == status, response.content[:300]
