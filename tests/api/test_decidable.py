"""GET /api/v1/requests/?decidable=true: exactly the pending requests the caller may approve."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from exceptions.models import ExceptionRequest, Workload
from exceptions.services.requests import submit_request

pytestmark = pytest.mark.django_db


def listed(client: APIClient, query: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = f"/api/v1/requests/?limit=200&{query}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        rows.extend(response.json()["results"])
        url = response.json()["next"]
    return rows


def file_for(filer: Any, requester: Any, workload: Workload, host: str, data_class: str) -> ExceptionRequest:
    """What a ticketing integration does with requests:on-behalf-of: ``filer`` files, ``requester`` owns it."""
    return submit_request(
        actor=filer,
        workload=workload,
        destinations=[{"host": host, "port": 443, "protocol": "tcp"}],
        purpose="partner_api",
        data_class=data_class,
        justification="Filed from the ticket by the integration for its reporter.",
        ticket_ref="JIRA-7",
        lifetime=timedelta(days=3),
        on_behalf_of=requester,
    )


def test_decidable_is_the_approvable_set_for_every_demo_user_including_requests_filed_on_behalf(
    settings: Any, tmp_path: Any
) -> None:
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())
    users = {u.username: u for u in get_user_model().objects.all()}
    payments = Workload.objects.filter(team__slug="payments")
    # The approver files for the requester (high risk in production, and low risk in staging);
    # the security officer files for the requester too: neither may approve what they filed.
    on_behalf = [
        file_for(users["approver"], users["requester"], payments.get(environment="prod", name="checkout-api"),
                 "settle.partner.example", "restricted"),
        file_for(users["approver"], users["requester"], payments.get(environment="staging", name="checkout-api"),
                 "files.partner.example", "internal"),
        file_for(users["security"], users["requester"], payments.get(environment="staging", name="checkout-api"),
                 "keys.partner.example", "restricted"),
    ]  # fmt: skip
    assert all(r.filed_by_id and r.status == "pending" for r in on_behalf)
    seen_any = False
    for name, user in sorted(users.items()):
        client = APIClient()
        client.force_authenticate(user)
        everything = listed(client, "")
        approvable = {r["id"] for r in everything if r["status"] == "pending" and "approve" in r["allowed_actions"]}
        decidable = {r["id"] for r in listed(client, "decidable=true")}
        assert decidable == approvable, name
        assert all(r["status"] == "pending" for r in listed(client, "decidable=true&status=pending"))
        for request in on_behalf:
            if request.filed_by_id == user.pk:
                assert request.pk not in decidable, name
        seen_any = seen_any or bool(decidable)
    # The demo is not vacuous: the approver has work, and a request filed by the approver goes to someone else.
    approver = APIClient()
    approver.force_authenticate(users["approver"])
    mine = {r["id"] for r in listed(approver, "decidable=true")}
    assert mine and not mine & {r.pk for r in on_behalf if r.filed_by_id == users["approver"].pk}
    security = APIClient()
    security.force_authenticate(users["security"])
    assert on_behalf[0].pk in {r["id"] for r in listed(security, "decidable=true")}
    assert seen_any


def test_decidable_is_in_the_openapi_document(client: Any, requester: Any) -> None:
    client.force_login(requester)
    document = yaml.safe_load(client.get("/api/v1/schema/").content)
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/requests/"]["get"]["parameters"]}
    assert parameters["decidable"]["schema"]["type"] == "boolean"
    assert "allowed_actions contain approve" in parameters["decidable"]["description"]


def test_a_bad_decidable_value_is_a_400_naming_the_parameter(requester: Any) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    response = client.get("/api/v1/requests/?decidable=perhaps")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "decidable"
