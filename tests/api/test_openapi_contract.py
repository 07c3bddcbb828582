"""schemathesis against the running portal: with a token per role, no 5xx and every
response (status, content type, body) as the OpenAPI document describes it.

Bounded: a few generated calls per operation and role (EGRESS_SCHEMATHESIS_EXAMPLES),
so the whole run takes well under a minute on CI's machine.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings

from exceptions.tokens import SCOPES, create_token
from tests.factories import UserFactory

EXAMPLES = int(os.environ.get("EGRESS_SCHEMATHESIS_EXAMPLES", "6"))


def _document() -> dict[str, Any]:
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return dict(json.loads(OpenApiJsonRenderer().render(generated)))


schema = schemathesis.openapi.from_dict(_document())
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture
def role_tokens(
    transactional_db: Any, requester: Any, approver: Any, security_officer: Any, auditor: Any, workload: Any
) -> dict[str, str]:
    admin = UserFactory(username="root", is_superuser=True)
    people = {
        "requester": requester,
        "approver": approver,
        "security": security_officer,
        "auditor": auditor,
        "admin": admin,
    }
    return {
        role: create_token(actor=user, user=user, name=f"contract-{role}", scopes=list(SCOPES))[1]
        for role, user in people.items()
    }


@pytest.mark.postgres
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_response_matches_the_document(case: Any, live_server: Any, role_tokens: dict[str, str]) -> None:
    for key in role_tokens.values():
        response = case.call(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        case.validate_response(response, checks=CHECKS)


def test_the_document_lists_problem_responses_and_the_pagination_envelope() -> None:
    document = _document()
    listing = document["paths"]["/api/v1/requests/"]["get"]
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert page == "#/components/schemas/PaginatedExceptionRequestList"
    assert {"next", "previous", "results"} <= set(
        document["components"]["schemas"]["PaginatedExceptionRequestList"]["properties"]
    )
    names = {p["name"] for p in listing["parameters"]}
    assert {
        "ticket_ref",
        "status",
        "team",
        "workload",
        "requester",
        "environment",
        "updated_since",
        "cursor",
        "limit",
    } <= names
    create = document["paths"]["/api/v1/requests/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "409", "415", "429"} <= set(create)
    assert create["400"]["content"]["application/problem+json"]["schema"]["$ref"] == "#/components/schemas/Problem"
    assert document["components"]["schemas"]["RequestInput"]["additionalProperties"] is False


def test_the_document_names_the_integration_headers() -> None:
    paths = _document()["paths"]
    create = paths["/api/v1/requests/"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in create["parameters"] if p["in"] == "header"}
    assert {"Location", "RateLimit-Remaining"} <= set(create["responses"]["201"]["headers"])
    detail = paths["/api/v1/requests/{id}/"]["get"]
    assert "If-None-Match" in {p["name"] for p in detail["parameters"]} and "304" in detail["responses"]
    assert "ETag" in detail["responses"]["200"]["headers"]
    approve = paths["/api/v1/requests/{id}/approve/"]["post"]
    assert "If-Match" in {p["name"] for p in approve["parameters"]} and "412" in approve["responses"]
