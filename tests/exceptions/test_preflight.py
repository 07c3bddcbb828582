"""POST /api/v1/preflight/: allowed, pending or needs a request, per destination."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.services import approve_request
from audit.models import AuditEvent
from bundle.records import rfc3339
from exceptions.models import ExceptionRequest
from exceptions.services.grants import revoke_grant
from exceptions.tokens import create_token
from tests.api_problems import field_errors, problem
from tests.factories import GrantFactory, WorkloadFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/preflight/"


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def check(client: APIClient, workload: Any, *destinations: dict[str, Any], **extra: Any) -> Any:
    return client.post(URL, {"workload": workload.pk, "destinations": list(destinations), **extra}, format="json")


def error_fields(response: Any) -> dict[str, str]:
    """Field path → messages of the RFC 9457 validation problem."""
    return {str(field): " ".join(messages) for field, messages in field_errors(response).items()}


def by_host(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.content
    return {f"{row['host']}:{row['port']}": row for row in response.json()["results"]}


@pytest.fixture
def active_grant(submit: Any, approver: Any) -> Any:
    """api.partner.example:443 approved now for the workload."""
    (grant,) = approve_request(actor=approver, request=submit(), reason="ok")
    return grant


def test_each_destination_is_allowed_pending_needs_a_request_or_invalid(
    requester: Any, workload: Any, active_grant: Any, submit: Any
) -> None:
    waiting = submit(destinations=[{"host": "*.files.partner.example", "port": 22}])
    response = check(
        api(requester),
        workload,
        {"host": "API.partner.example.", "port": 443},
        {"host": "sftp.files.partner.example", "port": 22, "protocol": "tcp"},
        {"host": "cdn.vendor.example", "port": 443},
        {"host": "10.0.0.8", "port": 443},
    )
    rows = by_host(response)
    allowed = rows["api.partner.example:443"]
    assert allowed["status"] == "allowed" and allowed["grant_id"] == active_grant.pk
    assert allowed["until"] == rfc3339(active_grant.expires_at)
    assert allowed["request"]["id"] == active_grant.request_id and allowed["request"]["status"] == "active"
    pending = rows["sftp.files.partner.example:22"]
    assert pending["status"] == "pending" and pending["request"]["id"] == waiting.pk
    assert pending["request"]["status"] == "pending"
    assert pending["request"]["url"].endswith(f"/requests/{waiting.pk}/")
    missing = rows["cdn.vendor.example:443"]
    assert missing["status"] == "needs_request" and "no grant" in missing["reason"]
    body = missing["request_body"]
    assert body["workload"] == workload.pk
    assert body["destinations"] == [
        {"host": "cdn.vendor.example", "port": 443, "protocol": "tcp", "tls_required": True}
    ]
    assert body["purpose"].startswith("<fill in") and body["lifetime_hours"].startswith("<fill in")
    invalid = rows["10.0.0.8:443"]
    assert invalid["status"] == "invalid" and invalid["errors"][0]["code"] == "ip_literal"
    assert "IP address literal" in invalid["reason"]
    answer = response.json()
    assert answer["summary"] == {"allowed": 1, "pending": 1, "needs_request": 1, "invalid": 1}
    assert answer["request_template"]["destinations"] == body["destinations"]
    assert answer["can_file"] is True
    assert ExceptionRequest.objects.count() == 2  # preflight wrote nothing


def test_the_request_template_once_filled_in_is_accepted_by_the_requests_endpoint(
    requester: Any, workload: Any
) -> None:
    answer = check(
        api(requester), workload, {"host": "a.vendor.example", "port": 443}, {"host": "b.vendor.example", "port": 8443}
    ).json()
    template = answer["request_template"]
    assert set(answer["placeholders"]) == {"purpose", "data_class", "justification", "lifetime_hours"}
    refused = api(requester).post("/api/v1/requests/", template, format="json")
    assert refused.status_code == 400  # placeholders are not answers
    filled = {
        **template,
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Fetches the vendor's price list every hour for the checkout page.",
        "lifetime_hours": 24,
    }
    created = api(requester).post("/api/v1/requests/", filled, format="json")
    assert created.status_code == 201, created.json()
    rows = by_host(check(api(requester), workload, {"host": "b.vendor.example", "port": 8443}))
    assert rows["b.vendor.example:8443"]["request"]["id"] == created.json()["id"]


def test_the_workload_may_be_named_by_identity_or_its_kubernetes_shorthand(requester: Any, workload: Any) -> None:
    for identity in (workload.identity, "payments/checkout-api"):
        response = api(requester).post(
            URL, {"identity": identity, "destinations": [{"host": "x.vendor.example", "port": 443}]}, format="json"
        )
        assert response.status_code == 200, response.content
        assert response.json()["workload"]["id"] == workload.pk


def test_a_scheduled_grant_is_pending_with_its_start(requester: Any, approver: Any, workload: Any, submit: Any) -> None:
    later = timezone.now() + timedelta(days=2)
    request = submit(desired_start=later)
    approve_request(actor=approver, request=request, reason="ok")
    row = by_host(check(api(requester), workload, {"host": "api.partner.example", "port": 443}))[
        "api.partner.example:443"
    ]
    assert row["status"] == "pending" and row["request"]["id"] == request.pk
    assert row["request"]["status"] == "approved" and row["request"]["starts_at"] == later.isoformat()


def test_a_revoked_grant_is_not_allowed(requester: Any, approver: Any, workload: Any, active_grant: Any) -> None:
    revoke_grant(actor=approver, grant=active_grant, reason="partner offboarded")
    row = by_host(check(api(requester), workload, {"host": "api.partner.example", "port": 443}))[
        "api.partner.example:443"
    ]
    assert row["status"] == "needs_request" and row["grant_id"] is None


def test_an_expired_grant_is_not_allowed_even_before_the_expiry_job_runs(requester: Any, workload: Any) -> None:
    now = timezone.now()
    GrantFactory(
        workload=workload,
        request__workload=workload,
        valid_from=now - timedelta(days=8),
        expires_at=now - timedelta(minutes=1),
        status="active",  # the expiry job has not moved it yet
    )
    row = by_host(check(api(requester), workload, {"host": "api.partner.example", "port": 443}))[
        "api.partner.example:443"
    ]
    assert row["status"] == "needs_request" and "not valid now" in row["reason"]


def test_a_grant_on_another_port_does_not_allow_this_one(requester: Any, workload: Any, active_grant: Any) -> None:
    row = by_host(check(api(requester), workload, {"host": "api.partner.example", "port": 8443}))[
        "api.partner.example:8443"
    ]
    assert row["status"] == "needs_request"


def test_a_wildcard_row_is_allowed_only_by_a_grant_for_that_wildcard(
    requester: Any, approver: Any, workload: Any, submit: Any
) -> None:
    approve_request(actor=approver, request=submit(destinations=[{"host": "*.cdn.vendor.example", "port": 443}]))
    submit(destinations=[{"host": "*.img.vendor.example", "port": 443}])
    rows = by_host(
        check(
            api(requester),
            workload,
            {"host": "*.cdn.vendor.example", "port": 443},
            {"host": "*.vendor.example", "port": 443},
            {"host": "*.img.vendor.example", "port": 443},
            {"host": "edge.cdn.vendor.example", "port": 443},
        )
    )
    assert rows["*.cdn.vendor.example:443"]["status"] == "allowed"
    assert rows["*.cdn.vendor.example:443"]["matched_rule"].startswith("wildcard *.cdn.vendor.example")
    broader = rows["*.vendor.example:443"]
    assert broader["status"] == "needs_request" and "_" not in broader["reason"]
    assert broader["request_body"]["destinations"][0]["host"] == "*.vendor.example"
    assert rows["*.img.vendor.example:443"]["status"] == "pending"
    assert rows["edge.cdn.vendor.example:443"]["status"] == "allowed"


def test_the_query_count_does_not_grow_with_the_destinations(
    requester: Any, workload: Any, active_grant: Any, submit: Any, django_assert_max_num_queries: Any
) -> None:
    submit(destinations=[{"host": f"h{i}.vendor.example", "port": 443} for i in range(5)])
    one = [{"host": "api.partner.example", "port": 443}]
    many = one + [{"host": f"h{i}.vendor.example", "port": 443 + i % 3} for i in range(60)]
    client = api(requester)
    with CaptureQueriesContext(connection) as few:
        assert check(client, workload, *one).status_code == 200
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert check(client, workload, *many).status_code == 200


# --- Who may ask ------------------------------------------------------------------


def test_teammate_approver_security_and_auditor_see_the_answer_but_only_members_may_file(
    teammate: Any, approver: Any, security_officer: Any, auditor: Any, workload: Any, active_grant: Any
) -> None:
    for user, can_file in ((teammate, True), (approver, False), (security_officer, False), (auditor, False)):
        response = check(api(user), workload, {"host": "api.partner.example", "port": 443})
        assert by_host(response)["api.partner.example:443"]["status"] == "allowed"
        assert response.json()["can_file"] is can_file


def test_an_outsider_gets_the_same_answer_as_for_an_unknown_workload(
    outsider: Any, workload: Any, active_grant: Any
) -> None:
    destinations = [{"host": "api.partner.example", "port": 443}]
    hidden = api(outsider).post(URL, {"workload": workload.pk, "destinations": destinations}, format="json")
    unknown = api(outsider).post(URL, {"workload": 999_999, "destinations": destinations}, format="json")
    assert hidden.status_code == unknown.status_code == 400
    assert error_fields(hidden) == error_fields(unknown)
    assert "workload" in error_fields(hidden)
    # Word for word the unknown id's answer, so nothing about the grant or the team can leak.
    assert hidden.json() == unknown.json()
    for leak in (workload.name, "Payments", "payments"):
        assert leak not in hidden.content.decode()
    by_identity = api(outsider).post(URL, {"identity": workload.identity, "destinations": destinations}, format="json")
    unknown_identity = api(outsider).post(
        URL, {"identity": "spiffe://cluster.local/ns/none/sa/none", "destinations": destinations}, format="json"
    )
    assert error_fields(by_identity) == error_fields(unknown_identity)


def test_a_token_needs_the_explain_scope(requester: Any, workload: Any) -> None:
    _, reader = create_token(actor=requester, user=requester, name="ci-reader", scopes=["requests:read"])
    refused = check(bearer(reader), workload, {"host": "api.partner.example", "port": 443})
    assert "'explain'" in problem(refused, 403)["detail"]
    _, ci = create_token(actor=requester, user=requester, name="ci", scopes=["explain"])
    allowed = check(bearer(ci), workload, {"host": "api.partner.example", "port": 443})
    assert allowed.status_code == 200
    assert AuditEvent.objects.filter(action="token.created").count() == 2


def test_anonymous_callers_are_refused(workload: Any) -> None:
    response = check(APIClient(), workload, {"host": "api.partner.example", "port": 443})
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


# --- Bad input ---------------------------------------------------------------------


OK_ROW = {"host": "a.example.org", "port": 443}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"destinations": [OK_ROW]}, "workload"),
        ({"workload": "checkout", "destinations": [OK_ROW]}, "workload"),
        ({"identity": "10.1.2.3", "destinations": [OK_ROW]}, "identity"),
        ({"workload": 1, "destinations": []}, "destinations"),
        ({"workload": 1, "destinations": {"host": "a.example.org"}}, "destinations"),
        ({"workload": 1, "destinations": ["a.example.org:443"]}, "destinations[0]"),
        ({"workload": 1, "destinations": [OK_ROW, {"host": "b.example.org"}]}, "destinations[1].port"),
        ({"workload": 1, "destinations": [{**OK_ROW, "port": "https"}]}, "destinations[0].port"),
        ({"workload": 1, "destinations": [{**OK_ROW, "port": 70000}]}, "destinations[0].port"),
        ({"workload": 1, "destinations": [{**OK_ROW, "host": ["a.example.org"]}]}, "destinations[0].host"),
        ({"workload": 1, "destinations": [{**OK_ROW, "host": "a" * 400 + ".example.org"}]}, "destinations[0].host"),
        ({"workload": 1, "destinations": [{**OK_ROW, "protocol": "icmp"}]}, "destinations[0].protocol"),
        ({"workload": 1, "destinations": [{**OK_ROW, "tls": True}]}, "destinations[0].tls"),
        ({"workload": 1, "destinatons": [OK_ROW]}, "destinatons"),
    ],
)
def test_malformed_input_is_a_400_naming_the_field(requester: Any, workload: Any, body: Any, field: str) -> None:
    if body.get("workload") == 1:
        body["workload"] = workload.pk
    response = api(requester).post(URL, body, format="json")
    assert field in error_fields(response), response.json()


def test_too_many_destinations_is_a_400_saying_the_limit(requester: Any, workload: Any, settings: Any) -> None:
    settings.EGRESS_PREFLIGHT_MAX_DESTINATIONS = 3
    rows = [{"host": f"h{i}.vendor.example", "port": "not-a-port"} for i in range(4)]
    response = api(requester).post(URL, {"workload": workload.pk, "destinations": rows}, format="json")
    errors = error_fields(response)
    assert list(errors) == ["destinations"]  # counted before the rows are read
    assert "4 destinations given; check at most 3" in errors["destinations"]


def test_a_body_that_is_not_json_is_a_400(requester: Any) -> None:
    response = api(requester).post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_refused_hosts_answer_per_row_with_the_validators_reason(requester: Any, workload: Any) -> None:
    hosts = ["*.com", "localhost", "2130706433", "exa mple.org", "*", "intranet"]
    response = api(requester).post(
        URL, {"workload": workload.pk, "destinations": [{"host": h, "port": 443} for h in hosts]}, format="json"
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["invalid"] * len(hosts)
    assert [r["errors"][0]["code"] for r in results] == [
        "public_suffix_wildcard",
        "localhost",
        "ip_literal",
        "not_a_host",
        "wildcard_position",
        "single_label",
    ]
    assert response.json()["request_template"] is None


def test_the_schema_documents_preflight(requester: Any) -> None:
    schema = api(requester).get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/preflight/"]["post"]
    assert {"200", "400"} <= set(operation["responses"])
    assert "PreflightInput" in operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    components = schema["components"]["schemas"]
    status_ref = components["PreflightRow"]["properties"]["status"]["$ref"].rsplit("/", 1)[-1]
    assert components[status_ref]["enum"] == ["allowed", "pending", "needs_request", "invalid"]
    assert operation["security"] and {"integrationToken": []} in operation["security"]


def test_a_workload_of_another_team_is_not_matched_by_identity_of_a_lookalike(requester: Any, workload: Any) -> None:
    other = WorkloadFactory(name="lookalike", namespace="payments", service_account="checkout-api-2")
    response = api(requester).post(
        URL, {"identity": other.identity, "destinations": [{"host": "x.vendor.example", "port": 443}]}, format="json"
    )
    assert "identity" in error_fields(response)
