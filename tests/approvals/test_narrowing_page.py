"""Narrowing on the approval form takes effect when filled, or is refused on its field; no switch decides."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.forms import DecisionForm
from approvals.models import Decision
from audit.models import AuditEvent
from exceptions.models import ExceptionRequest, Grant
from tests.api_problems import field_errors

pytestmark = pytest.mark.django_db

TWO_HOSTS = [{"host": "a.partner.example", "port": 443}, {"host": "b.partner.example", "port": 443}]


@pytest.fixture
def decider(approver: Any) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def _snapshot(request: ExceptionRequest) -> tuple[Any, ...]:
    request.refresh_from_db()
    return (
        request.status,
        request.lifetime,
        sorted(request.destinations.values_list("host", flat=True)),
        Decision.objects.count(),
        Grant.objects.count(),
        AuditEvent.objects.count(),
    )


def _field_errors(body: str, error_id: str) -> str:
    found = re.search(rf'<div id="{error_id}" class="errors">(.*?)</div>', body, flags=re.S)
    assert found, f"no #{error_id} on the page"
    return re.sub(r"<[^>]+>", " ", found.group(1))


def test_the_form_has_no_switch_that_decides_whether_narrowing_applies(decider: Client, submit: Any) -> None:
    request = submit(destinations=TWO_HOSTS)
    assert set(DecisionForm.base_fields) == {"reason", "lifetime_hours", "drop", "confirm"}
    page = decider.get(f"/requests/{request.pk}/").content.decode()
    form = page[page.index('id="approve-form"') : page.index("</form>", page.index('id="approve-form"'))]
    assert 'name="narrow"' not in form and "Apply these limits" not in page
    assert [m for m in re.findall(r'<input type="checkbox"[^>]*>', form) if "checked" in m] == []


def test_approving_with_48_hours_gives_grants_that_end_48_hours_after_go_live(decider: Client, submit: Any) -> None:
    request = submit(lifetime=timedelta(days=7))
    response = decider.post(f"/approvals/{request.pk}/approve/", {"lifetime_hours": "48"})
    assert response.status_code == 302
    [grant] = Grant.objects.filter(request=request)
    assert grant.expires_at - grant.valid_from == timedelta(hours=48)
    request.refresh_from_db()
    assert request.status == "active" and request.lifetime == timedelta(hours=48)
    narrowed = AuditEvent.objects.get(action="request.narrowed")
    assert narrowed.before["lifetime_hours"] == 168 and narrowed.after["lifetime_hours"] == 48


def test_a_scheduled_request_narrowed_to_48_hours_ends_48_hours_after_it_goes_live(
    decider: Client, submit: Any
) -> None:
    start = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    request = submit(lifetime=timedelta(days=7), desired_start=start)
    assert decider.post(f"/approvals/{request.pk}/approve/", {"lifetime_hours": "48"}).status_code == 302
    [grant] = Grant.objects.filter(request=request)
    assert grant.status == "scheduled" and grant.valid_from == start
    assert grant.expires_at == start + timedelta(hours=48)


def test_ticking_a_destination_leaves_it_out(decider: Client, submit: Any) -> None:
    request = submit(destinations=TWO_HOSTS)
    dropped = request.destinations.get(host="b.partner.example").pk
    assert decider.post(f"/approvals/{request.pk}/approve/", {"drop": [str(dropped)]}).status_code == 302
    assert list(Grant.objects.filter(request=request).values_list("host", flat=True)) == ["a.partner.example"]
    assert AuditEvent.objects.get(action="request.narrowed").after["dropped"] == ["b.partner.example:443/tcp"]


def test_an_empty_narrowing_approves_the_request_as_filed(decider: Client, submit: Any) -> None:
    request = submit(destinations=TWO_HOSTS, lifetime=timedelta(days=3))
    assert decider.post(f"/approvals/{request.pk}/approve/", {"lifetime_hours": "", "reason": ""}).status_code == 302
    grants = list(Grant.objects.filter(request=request))
    assert len(grants) == 2 and all(g.expires_at - g.valid_from == timedelta(days=3) for g in grants)
    assert not AuditEvent.objects.filter(action="request.narrowed").exists()


@pytest.mark.parametrize(
    ("data", "error_id", "words"),
    [
        ({"lifetime_hours": "200"}, "narrow-lifetime-errors", "Narrowing cannot lengthen the lifetime (7 days"),
        ({"lifetime_hours": "0"}, "narrow-lifetime-errors", "lifetime in hours"),
        ({"lifetime_hours": "4x"}, "narrow-lifetime-errors", "lifetime in hours"),
        ({"drop": "ALL"}, "narrow-drop-errors", "Keep at least one destination, or reject the request instead."),
        ({"drop": ["999999"]}, "narrow-drop-errors", "999999"),
    ],
    ids=["longer", "zero", "not-a-number", "every-destination", "unknown-destination"],
)
def test_invalid_narrowing_is_refused_on_its_field_and_changes_nothing(
    decider: Client, submit: Any, data: dict[str, Any], error_id: str, words: str
) -> None:
    request = submit(destinations=TWO_HOSTS, lifetime=timedelta(days=7))
    if data.get("drop") == "ALL":
        data = {"drop": [str(pk) for pk in request.destinations.values_list("pk", flat=True)]}
    before = _snapshot(request)

    response = decider.post(f"/approvals/{request.pk}/approve/", {"reason": "Looks fine.", **data})

    assert response.status_code == 400
    body = response.content.decode()
    assert words in _field_errors(body, error_id)
    assert '<details id="narrow" open>' in body  # the refused field is in view
    assert "Looks fine.</textarea>" in body  # what was typed is kept
    if "lifetime_hours" in data:
        assert f'value="{data["lifetime_hours"]}"' in body
    assert _snapshot(request) == before


def test_the_rules_lifetime_cap_is_shown_on_the_lifetime_field(
    settings: Any, tmp_path: Path, decider: Client, submit: Any
) -> None:
    policy = tmp_path / "cap.yaml"
    policy.write_text(
        "version: 1\nrules:\n  - name: default\n    max_lifetime: 3d\n    require: [{group: owning-team}]\n"
    )
    settings.EGRESS_APPROVAL_POLICY_FILE = policy
    request = submit(lifetime=timedelta(days=7))
    before = _snapshot(request)

    response = decider.post(f"/approvals/{request.pk}/approve/", {})

    assert response.status_code == 400
    assert "Rule default allows at most 3 days" in _field_errors(response.content.decode(), "narrow-lifetime-errors")
    assert _snapshot(request) == before
    assert decider.post(f"/approvals/{request.pk}/approve/", {"lifetime_hours": "72"}).status_code == 302
    [grant] = Grant.objects.filter(request=request)
    assert grant.expires_at - grant.valid_from == timedelta(hours=72)


def test_a_high_risk_confirmation_carries_the_narrowing_it_names(
    settings: Any, tmp_path: Path, decider: Client, submit: Any
) -> None:
    policy = tmp_path / "one.yaml"
    policy.write_text("version: 1\nrules:\n  - name: default\n    require: [{group: owning-team}]\n")
    settings.EGRESS_APPROVAL_POLICY_FILE = policy
    request = submit(destinations=TWO_HOSTS, data_class="restricted", lifetime=timedelta(days=5))
    assert request.risk_tier == "high"
    dropped = request.destinations.get(host="b.partner.example").pk

    confirm = decider.post(f"/approvals/{request.pk}/approve/", {"lifetime_hours": "48", "drop": [str(dropped)]})

    assert confirm.status_code == 200 and not Grant.objects.exists()
    body = confirm.content.decode()
    assert "for 48 hours instead of 5 days" in body and "b.partner.example" in body
    hidden = dict(re.findall(r'<input type="hidden" name="(lifetime_hours|drop|confirm)" value="([^"]*)">', body))
    assert hidden == {"lifetime_hours": "48", "drop": str(dropped), "confirm": "on"}
    assert decider.post(f"/approvals/{request.pk}/approve/", hidden).status_code == 302
    [grant] = Grant.objects.filter(request=request)
    assert grant.host == "a.partner.example" and grant.expires_at - grant.valid_from == timedelta(hours=48)


def test_the_api_narrows_when_the_fields_are_sent_and_refuses_on_the_field(approver: Any, submit: Any) -> None:
    api = APIClient()
    api.force_authenticate(approver)
    refused = submit(lifetime=timedelta(days=7))
    before = _snapshot(refused)
    response = api.post(f"/api/v1/requests/{refused.pk}/approve/", {"lifetime_hours": 200}, format="json")
    assert "cannot lengthen" in " ".join(field_errors(response)["lifetime_hours"])
    assert _snapshot(refused) == before
    response = api.post(f"/api/v1/requests/{refused.pk}/approve/", {"lifetime_hours": 48}, format="json")
    assert response.status_code == 200
    [grant] = Grant.objects.filter(request=refused)
    assert grant.expires_at - grant.valid_from == timedelta(hours=48)
