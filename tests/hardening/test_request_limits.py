"""The request limits live in the service, so the HTML form and the API say the same thing."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from exceptions.models import ExceptionRequest
from tests.api_problems import field_errors
from tests.hardening.test_no_input_gives_500 import api_payload, form_payload

pytestmark = pytest.mark.django_db


def _api_errors(requester: Any, workload: Any, **changes: Any) -> dict[str, list[str]]:
    client = APIClient()
    client.force_authenticate(requester)
    response = client.post("/api/v1/requests/", {**api_payload(workload), **changes}, format="json")
    return {str(field): messages for field, messages in field_errors(response).items()}


def _form_errors(requester: Any, workload: Any, **changes: Any) -> list[str]:
    client = Client()
    client.force_login(requester)
    response = client.post("/requests/new/", {**form_payload(workload), **changes})
    assert response.status_code == 400
    return [unescape(m) for m in re.findall(r'class="error"[^>]*>([^<]+)<', response.content.decode())]


def test_too_many_destinations_get_one_message(requester: Any, workload: Any) -> None:
    rows = [{"host": f"h{i}.partner.example", "port": 443} for i in range(51)]
    [api_message] = _api_errors(requester, workload, destinations=rows)["destinations"]
    form_rows: dict[str, str] = {"dest-TOTAL_FORMS": "51"}
    for i in range(51):
        form_rows.update(
            {f"dest-{i}-host": f"h{i}.partner.example", f"dest-{i}-port": "443", f"dest-{i}-protocol": "tcp"}
        )
    assert api_message.startswith("A request may name at most 50 destinations (51 given)")
    assert api_message in _form_errors(requester, workload, **form_rows)
    assert not ExceptionRequest.objects.exists()


@pytest.mark.parametrize(
    ("field", "length", "limit"), [("ticket_ref", 101, "100"), ("justification", 10_001, "10,000")]
)
def test_text_limits_get_one_message(requester: Any, workload: Any, field: str, length: int, limit: str) -> None:
    [api_message] = _api_errors(requester, workload, **{field: "x" * length})[field]
    assert f"at most {limit} characters" in api_message
    assert api_message in _form_errors(requester, workload, **{field: "x" * length})
    assert not ExceptionRequest.objects.exists()


def test_an_unreadable_reason_changes_nothing(
    client: Client, submit: Any, security_officer: Any, approver: Any
) -> None:
    from approvals.services import approve_request

    [grant] = approve_request(actor=approver, request=submit())
    client.force_login(security_officer)
    response = client.post(f"/grants/{grant.pk}/revoke/", {"reason": "bad\x00byte"}, follow=True)
    grant.refresh_from_db()
    assert grant.status == "active"
    assert "Reason: Null characters are not allowed. Nothing was changed." in response.content.decode()


ONE_WORDING = [
    ("purpose", {"purpose": "spying"}, {"purpose": "spying"}),
    ("data_class", {"data_class": "secret"}, {"data_class": "secret"}),
    ("justification", {"justification": ""}, {"justification": ""}),
    (
        "destinations[0].protocol",
        {"destinations": [{"host": "api.partner.example", "port": 443, "protocol": "sctp"}]},
        {"dest-0-protocol": "sctp"},
    ),
    (
        "destinations[0].port",
        {"destinations": [{"host": "api.partner.example", "port": "٤٤٣"}]},
        {"dest-0-port": "٤٤٣"},
    ),
    (
        "destinations[0].host",
        {"destinations": [{"host": "metadata.google.internal", "port": 443}]},
        {"dest-0-host": "metadata.google.internal"},
    ),
]


@pytest.mark.parametrize(("key", "api_changes", "form_changes"), ONE_WORDING)
def test_each_rule_has_one_wording_in_the_form_and_the_api(
    requester: Any, workload: Any, key: str, api_changes: dict[str, Any], form_changes: dict[str, str]
) -> None:
    # Row errors use the service's keys whether DRF or the service found them.
    [api_message] = _api_errors(requester, workload, **api_changes)[key]
    assert api_message in _form_errors(requester, workload, **form_changes)
