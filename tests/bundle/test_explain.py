"""Explain: the portal's answer, its reasons, nearest candidates and the exception template."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.services import approve_request
from bundle.emitters.opa import shard_of, shard_path
from exceptions.explain import explain
from exceptions.services.batches import expire_due_grants
from tests.api_problems import field_errors

pytestmark = pytest.mark.django_db


@pytest.fixture
def granted(submit: Any, approver: Any) -> Any:
    request = submit(
        destinations=[{"host": "api.partner.example", "port": 443}, {"host": "*.cdn.partner.example", "port": 443}]
    )
    return approve_request(actor=approver, request=request)


def test_allow_names_the_grant_and_the_matched_rule(granted: Any, workload: Any) -> None:
    result = explain(identity=workload.identity, host="IMG.cdn.partner.example.", port=443)
    assert result.allow and result.grant_id == granted[1].pk
    assert result.matched_rule == "wildcard *.cdn.partner.example (exactly one extra label)"
    assert result.policy_path == "data.egress.decision"
    assert result.reason.startswith(f"grant {granted[1].pk} allows {workload.identity}")


def test_kubernetes_identity_input_is_canonicalised(granted: Any) -> None:
    assert explain(identity="payments/checkout-api", host="api.partner.example", port=443).allow


def test_deny_lists_nearest_candidates_and_a_prefilled_request(granted: Any, workload: Any, outsider: Any) -> None:
    result = explain(identity=workload.identity, host="api.partner.example", port=8443)
    assert not result.allow
    assert result.reason == f"no grant for {workload.identity} to reach api.partner.example on port 8443/tcp"
    assert any("another port" in c["why"] for c in result.candidates)
    assert result.request_url == f"/requests/new/?host=api.partner.example&port=8443&workload={workload.pk}"


def test_expired_grant_is_named_as_a_candidate(granted: Any, workload: Any) -> None:
    expire_due_grants(now=timezone.now() + timedelta(days=8))
    result = explain(identity=workload.identity, host="api.partner.example", port=443)
    assert not result.allow and result.reason == f"no grants for identity {workload.identity}"
    assert any("expired" in c["why"] for c in result.candidates)


def test_other_identity_with_access_is_named(granted: Any) -> None:
    result = explain(identity="spiffe://cluster.local/ns/x/sa/y", host="api.partner.example", port=443)
    assert not result.allow and any("another identity" in c["why"] for c in result.candidates)
    assert "workload=" not in (result.request_url or "")


def test_management_command_prints_json(granted: Any, workload: Any) -> None:
    out = StringIO()
    call_command(
        "explain",
        "--identity",
        workload.identity,
        "--host",
        "api.partner.example",
        "--port",
        "443",
        "--json",
        stdout=out,
    )
    body = json.loads(out.getvalue())
    assert body["allow"] is True and body["grant_id"] == granted[0].pk
    assert set(body) >= {"allow", "reason", "grant_id", "expires_at", "policy_path", "matched_rule", "candidates"}


def test_management_command_explains_a_deny_in_words(workload: Any) -> None:
    out = StringIO()
    call_command("explain", "--identity", workload.identity, "--host", "nope.example", "--port", "443", stdout=out)
    text = out.getvalue()
    assert "DENY" in text and "request it:" in text and "/requests/new/?host=nope.example" in text


def test_explain_page_and_api(client: Client, granted: Any, workload: Any, requester: Any) -> None:
    client.force_login(requester)
    page = client.get(
        "/explain", {"identity": workload.identity, "host": "x.cdn.partner.example", "port": 443, "protocol": "tcp"}
    )
    assert page.status_code == 200 and "Allowed" in page.content.decode()
    api = APIClient()
    api.force_authenticate(requester)
    response = api.get("/api/v1/explain/", {"identity": workload.identity, "host": "pypi.org", "port": 443})
    assert response.status_code == 200 and response.json()["allow"] is False
    bad = api.get("/api/v1/explain/", {"identity": workload.identity, "host": "pypi.org", "port": 0})
    assert "port" in field_errors(bad)


def test_preview_shows_the_exact_files_approval_would_change(
    client: Client, submit: Any, approver: Any, prod_workload: Any, open_prod_window: Any
) -> None:
    request = submit(workload=prod_workload, destinations=[{"host": "api.partner.example", "port": 443}])
    client.force_login(approver)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert "Policy change if approved now" in page and "opa/data.json" in page
    api = APIClient()
    api.force_authenticate(approver)
    files = {d["path"]: d["diff"] for d in api.get(f"/api/v1/requests/{request.pk}/preview/").json()}
    cilium = "teams/payments/cilium/payments-prod/egress-checkout.yaml"
    allow = "teams/payments/istio/authorizationpolicies/egress-portal-allow-payments-ns-payments-prod.yaml"
    shard = shard_path(shard_of(prod_workload.identity))
    assert sorted(files) == [
        "CODEOWNERS",  # the team's first grant: its directory gets its owner
        "istio/serviceentries/egress-dns-tls443.yaml",
        "opa/data.json",  # a new identity: the shard index names its shard
        shard,
        cilium,
        allow,
    ]

    def added(path: str, text: str) -> bool:
        return any(line.startswith("+") and text in line for line in files[path].splitlines())

    assert added(shard, '"host": "api.partner.example"')
    assert added("opa/data.json", f'"{prod_workload.identity}"')
    assert added(cilium, 'matchName: "api.partner.example"')
    assert added("CODEOWNERS", "/teams/payments/ @egress-portal/payments")
    assert added(allow, "cluster.local/ns/payments-prod/sa/checkout")
    assert added("istio/serviceentries/egress-dns-tls443.yaml", '"api.partner.example"')
    approve_request(actor=approver, request=request)
    assert api.get(f"/api/v1/requests/{request.pk}/preview/").status_code == 409


def test_candidates_are_limited_to_grants_the_user_may_see(granted: Any, outsider: Any, requester: Any) -> None:
    stranger = "spiffe://cluster.local/ns/x/sa/y"
    assert explain(identity=stranger, host="api.partner.example", port=443, user=requester).candidates
    hidden = explain(identity=stranger, host="api.partner.example", port=443, user=outsider)
    assert not hidden.allow and hidden.candidates == []
