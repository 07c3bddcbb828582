"""A "provider service" destination (AWS S3 in eu-west-1): filed by name, approved by name, compiled to its ranges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from approvals.services import approve_request
from audit.services import SYSTEM
from exceptions.approval_preview import preview_approval
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.provider_ranges import sync_provider_ranges
from exceptions.services.publications import current_bundle

pytestmark = pytest.mark.django_db
FILES = Path(__file__).parent.parent / "bundle" / "provider_files"
CILIUM = "teams/payments/cilium/payments/egress-checkout-api-ranges.yaml"


@pytest.fixture
def aws_ranges() -> None:
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(FILES / "ip-ranges.json"))


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _api_payload(workload: Any, destination: dict[str, Any]) -> dict[str, Any]:
    return {
        "workload": workload.pk,
        "destinations": [destination],
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Nightly exports to the partner's S3 bucket in Ireland.",
        "ticket_ref": "CHG-9",
        "lifetime_hours": 48,
    }


def test_api_files_a_service_approval_grants_it_and_the_bundle_carries_its_current_ranges(
    aws_ranges: None, requester: Any, approver: Any, workload: Any, tmp_path: Path
) -> None:
    created = _api(requester).post(
        "/api/v1/requests/", _api_payload(workload, {"service": "aws:S3/eu-west-1", "port": 443}), format="json"
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["destinations"][0]["host"] == "aws:S3/eu-west-1"
    assert body["risk_tier"] == "medium"  # a service counts at least like a wildcard
    approved = _api(approver).post(f"/api/v1/requests/{body['id']}/approve/", {"reason": "ok"}, format="json")
    assert approved.status_code == 200, approved.json()
    [grant] = Grant.objects.all()
    assert (grant.host, grant.service) == ("aws:S3/eu-west-1", "aws:S3/eu-west-1")
    assert "3.5.64.0/21" in current_bundle().files[CILIUM].decode()

    document = json.loads((FILES / "ip-ranges.json").read_text())
    document["syncToken"] = "1732900000"
    document["prefixes"].append({"ip_prefix": "3.5.72.0/23", "region": "eu-west-1", "service": "S3"})
    newer = tmp_path / "ip-ranges.json"
    newer.write_text(json.dumps(document))
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(newer))
    assert "3.5.72.0/23" in current_bundle().files[CILIUM].decode()
    assert Grant.objects.count() == 1 and ExceptionRequest.objects.count() == 1


def test_an_unknown_service_names_the_field_and_the_known_services(
    aws_ranges: None, requester: Any, workload: Any
) -> None:
    response = _api(requester).post(
        "/api/v1/requests/", _api_payload(workload, {"service": "aws:S3/eu-west-9", "port": 443}), format="json"
    )
    assert response.status_code == 400
    text = json.dumps(response.json())
    assert "destinations[0].service" in text
    assert "'aws:S3/eu-west-9' is not a service in aws's ranges" in text and "aws:S3/eu-west-1" in text
    google = _api(requester).post(
        "/api/v1/requests/", _api_payload(workload, {"service": "google:Google Cloud/x", "port": 443}), format="json"
    )
    assert google.status_code == 400 and "loaded: aws" in json.dumps(google.json())
    assert not ExceptionRequest.objects.exists()


def test_a_row_with_both_a_host_and_a_service_is_refused(aws_ranges: None, submit: Any) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as raised:
        submit(destinations=[{"host": "api.partner.example", "service": "aws:S3/eu-west-1", "port": 443}])
    assert "not both" in raised.value.message_dict["destinations[0].service"][0]


def test_the_html_form_files_a_service_and_every_page_shows_the_name_not_the_numbers(
    aws_ranges: None, client: Client, requester: Any, approver: Any, workload: Any
) -> None:
    client.force_login(requester)
    form = {
        "workload": workload.pk,
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Nightly exports to the partner's S3 bucket in Ireland.",
        "ticket_ref": "CHG-9",
        "lifetime_value": 7,
        "lifetime_unit": "days",
        "desired_start": "",
        "dest-TOTAL_FORMS": 1,
        "dest-INITIAL_FORMS": 0,
        "dest-MIN_NUM_FORMS": 1,
        "dest-MAX_NUM_FORMS": 20,
        "dest-0-host": "",
        "dest-0-service": "aws:S3/eu-west-1",
        "dest-0-port": 443,
        "dest-0-protocol": "tcp",
        "dest-0-tls_required": "on",
    }
    response = client.post(reverse("request-create"), form)
    assert response.status_code == 302, response.context and response.context["formset"].errors
    request = ExceptionRequest.objects.get()
    assert [d.host for d in request.destinations.all()] == ["aws:S3/eu-west-1"]
    page = client.get(request.get_absolute_url()).content.decode()
    assert "aws:S3/eu-west-1" in page and "provider service" in page and "3.5.64.0" not in page

    preview = preview_approval(request)
    diff = "".join(d.diff for d in [*preview.on_approval, *preview.at_go_live])
    assert "aws:S3/eu-west-1" in diff

    client.force_login(approver)
    queue = client.get(reverse("approval-queue")).content.decode()
    assert "aws:S3/eu-west-1" in queue and "3.5.64.0" not in queue
    [grant] = approve_request(actor=approver, request=request)
    assert grant.service == "aws:S3/eu-west-1"
    grant_page = client.get(grant.get_absolute_url()).content.decode()
    assert "aws:S3/eu-west-1" in grant_page and "3.5.64.0" not in grant_page


def test_a_row_with_neither_host_nor_service_asks_for_a_destination(
    client: Client, requester: Any, workload: Any
) -> None:
    from exceptions.services.submissions import NO_DESTINATIONS

    client.force_login(requester)
    response = client.post(
        reverse("request-create"),
        {
            "workload": workload.pk,
            "purpose": "partner_api",
            "data_class": "internal",
            "justification": "Nightly exports.",
            "lifetime_value": 7,
            "lifetime_unit": "days",
            "dest-TOTAL_FORMS": 1,
            "dest-INITIAL_FORMS": 0,
            "dest-0-port": 443,
            "dest-0-protocol": "tcp",
        },
    )
    assert response.status_code == 400
    # An empty row is dropped (as on resubmit); with none left the page asks for one.
    assert response.context["formset"].non_form_errors() == [NO_DESTINATIONS]
