"""No cross-team leaks: explain details only for grants the caller may see; another
team's workload answers like an unknown one; /metrics and the API docs are closed."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from approvals.services import approve_request
from exceptions.explain import explain
from tests.api_problems import field_errors
from tests.hardening.test_no_input_gives_500 import form_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def granted(submit: Any, approver: Any) -> Any:
    [grant] = approve_request(actor=approver, request=submit())
    return grant


def test_explain_tells_an_outsider_the_verdict_and_the_team_but_no_grant_details(
    granted: Any, workload: Any, outsider: Any, requester: Any
) -> None:
    seen = explain(identity=workload.identity, host="api.partner.example", port=443, user=requester)
    assert seen.allow and seen.grant_id == granted.pk and seen.granted_by_team is None
    hidden = explain(identity=workload.identity, host="api.partner.example", port=443, user=outsider)
    assert hidden.allow and hidden.granted_by_team == "Payments"
    assert hidden.grant_id is None and hidden.expires_at is None and hidden.matched_rule is None
    # The id as a number of its own: grant 3 must not be "found" in port 443.
    assert not re.search(rf"(?<!\d){granted.pk}(?!\d)", hidden.reason)
    assert str(granted.expires_at.year) not in hidden.reason


def test_explain_page_and_api_hide_grant_details_from_outsiders(
    client: Client, granted: Any, workload: Any, outsider: Any
) -> None:
    params = {"identity": workload.identity, "host": "api.partner.example", "port": 443}
    client.force_login(outsider)
    page = client.get("/explain", params).content.decode()
    assert "Allowed" in page and "team Payments" in page and f"/grants/{granted.pk}/" not in page
    api = APIClient()
    api.force_authenticate(outsider)
    body = api.get("/api/v1/explain/", params).json()
    assert body["allow"] and body["grant_id"] is None and body["granted_by_team"] == "Payments"


def test_explain_cli_answers_as_a_user_when_asked(granted: Any, workload: Any, outsider: Any) -> None:
    out = StringIO()
    args = ["--identity", workload.identity, "--host", "api.partner.example", "--port", "443", "--json"]
    call_command("explain", *args, "--as-user", "charlie", stdout=out)
    body = json.loads(out.getvalue())
    assert body["allow"] and body["grant_id"] is None and body["granted_by_team"] == "Payments"
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
