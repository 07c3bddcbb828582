"""No cross-team leaks: explain answers another team's workload like an unknown one,
whatever grants it holds; /metrics and the API docs are closed."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.services import approve_request
from exceptions.explain import explain
from exceptions.services.grants import revoke_grant
from tests.api_problems import field_errors
from tests.hardening.test_no_input_gives_500 import form_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def granted(submit: Any, approver: Any) -> Any:
    [grant] = approve_request(actor=approver, request=submit())
    return grant


def test_explain_tells_an_outsider_nothing_about_another_teams_grant(
    granted: Any, workload: Any, outsider: Any, requester: Any
) -> None:
    seen = explain(identity=workload.identity, host="api.partner.example", port=443, user=requester)
    assert seen.allow and seen.grant_id == granted.pk
    hidden = explain(identity=workload.identity, host="api.partner.example", port=443, user=outsider)
    assert not hidden.allow and hidden.grant_id is None and hidden.expires_at is None and hidden.matched_rule is None
    assert hidden.reason.startswith(f"{workload.identity} is not a workload of a team you belong to")
    assert "Payments" not in str(hidden.as_dict())
    # The id as a number of its own: grant 3 must not be "found" in port 443.
    assert not re.search(rf"(?<!\d){granted.pk}(?!\d)", hidden.reason)
    assert str(granted.expires_at.year) not in hidden.reason


def _answers(outsider: Any, identity: str, port: int = 443) -> dict[str, bytes]:
    """What an outsider is told about ``identity`` reaching api.partner.example, by the page, the
    API and the command, with what differs per request (CSRF token, CSP nonce) taken out."""
    params = {"identity": identity, "host": "api.partner.example", "port": port}
    page = Client()
    page.force_login(outsider)
    html = page.get("/explain", params)
    api = APIClient()
    api.force_authenticate(outsider)
    by_api = api.get("/api/v1/explain/", params)
    out = StringIO()
    args = ["--identity", identity, "--host", "api.partner.example", "--port", str(port), "--as-user", "charlie"]
    call_command("explain", *args, "--json", stdout=out)
    words = StringIO()
    call_command("explain", *args, stdout=words)
    volatile = re.compile(rb'(csrfmiddlewaretoken" value="|nonce="|csrf-token" content=")[^"]*')
    return {
        "page": f"{html.status_code}".encode() + volatile.sub(rb"\1", html.content),
        "api": f"{by_api.status_code}".encode() + by_api.content,
        "cli": out.getvalue().encode(),
        "cli-words": words.getvalue().encode(),
    }


def test_explain_answers_an_outsider_the_same_whether_another_team_holds_a_grant_or_none(
    submit: Any, approver: Any, requester: Any, workload: Any, outsider: Any
) -> None:
    """Issue 17 §5: same status, text and fields, byte for byte, on the page, the API and the CLI."""
    nothing = _answers(outsider, workload.identity)
    [grant] = approve_request(actor=approver, request=submit())
    same_destination = _answers(outsider, workload.identity)
    revoke_grant(actor=approver, grant=grant, reason="Partner moved.")
    revoked = _answers(outsider, workload.identity)
    approve_request(actor=approver, request=submit(destinations=[{"host": "api.partner.example", "port": 8443}]))
    other_port = _answers(outsider, workload.identity)
    later = submit(
        destinations=[{"host": "api.partner.example", "port": 443}], desired_start=timezone.now() + timedelta(days=2)
    )
    approve_request(actor=approver, request=later)
    starts_later = _answers(outsider, workload.identity)
    assert same_destination == nothing
    assert revoked == nothing
    assert other_port == nothing
    assert starts_later == nothing
    assert b"api.partner.example" in nothing["page"] and nothing["api"].startswith(b"200")
    # An identity no team has is answered the same way too, but for the name itself.
    unknown = "spiffe://cluster.local/ns/nobody/sa/nothing"
    assert _answers(outsider, unknown)["api"] == nothing["api"].replace(workload.identity.encode(), unknown.encode())
    # The team itself sees the truth.
    assert explain(identity=workload.identity, host="api.partner.example", port=8443, user=requester).allow


def test_explain_cli_refuses_a_bad_port_or_identity_by_name() -> None:
    with pytest.raises(CommandError, match="not a valid port"):
        call_command("explain", "--identity", "payments/checkout-api", "--host", "a.example", "--port", "٤٤٣")
    with pytest.raises(CommandError, match="identity"):
        call_command("explain", "--identity", "not an identity", "--host", "a.example", "--port", "443")


def test_a_malformed_identity_is_a_format_error_not_a_deny(client: Client, requester: Any) -> None:
    client.force_login(requester)
    page = client.get("/explain", {"identity": "10.0.0.1", "host": "api.partner.example", "port": 443})
    assert page.status_code == 400 and b'data-field="identity"' in page.content and b"Denied" not in page.content
    api = APIClient()
    api.force_authenticate(requester)
    response = api.get("/api/v1/explain/", {"identity": "10.0.0.1", "host": "api.partner.example", "port": 443})
    assert "identity" in field_errors(response)


def test_explain_defaults_the_protocol_to_tcp_and_offers_visible_identities(
    client: Client, granted: Any, workload: Any, requester: Any
) -> None:
    client.force_login(requester)
    page = client.get("/explain", {"identity": workload.identity, "host": "api.partner.example", "port": 443})
    body = page.content.decode()
    assert page.status_code == 200 and "Allowed" in body
    assert f'<option value="{workload.identity}">' in body
    assert f'href="/grants/{granted.pk}/"' in body and "UTC" in body


def test_filing_for_another_teams_workload_answers_like_an_unknown_id(
    client: Client, workload: Any, outsider: Any
) -> None:
    client.force_login(outsider)
    theirs = client.post("/requests/new/", form_payload(workload))
    unknown = client.post("/requests/new/", {**form_payload(workload), "workload": "999999"})
    assert theirs.status_code == unknown.status_code == 400
    assert theirs.context["form"].errors["workload"] == unknown.context["form"].errors["workload"]
    assert "Payments" not in str(theirs.context["form"].errors) and "checkout" not in str(theirs.context["form"].errors)


def test_anonymous_people_opening_the_api_docs_are_sent_to_log_in(client: Client) -> None:
    response = client.get("/api/v1/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/api/v1/docs/")
