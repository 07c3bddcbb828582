"""The approver dashboard: what it lists, filters, constant query count, deciding from the list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from approvals.models import Decision
from approvals.services import approve_request
from exceptions.models import ExceptionRequest
from tests.approvals.conftest import at_the_decision, step_up
from tests.factories import ExceptionRequestFactory, WorkloadFactory

pytestmark = pytest.mark.django_db


def test_queue_lists_oldest_first_with_rule_missing_and_hosts(
    client: Client, submit: Any, submit_high: Any, mfa_approver: Any
) -> None:
    hosts = [{"host": f"h{i}.partner.example", "port": 443} for i in range(5)]
    first = submit(destinations=hosts)
    second = submit_high()
    client.force_login(mfa_approver)
    page = client.get("/approvals/").content.decode()
    assert page.index(f"#{first.pk}") < page.index(f"#{second.pk}")
    assert "h0.partner.example" in page and "h2.partner.example" in page and "h3.partner.example" not in page
    assert "and 2 more" in page
    assert "high-risk" in page and "team approver and security officer missing" in page
    assert "restricted data leaves the network" in page
    assert "CHG-1" in page and "on approval" in page


def test_high_risk_requests_are_not_listed_for_approvers_without_mfa(
    client: Client, submit_high: Any, approver: Any
) -> None:
    submit_high()
    client.force_login(approver)
    assert "Nothing waits for you" in client.get("/approvals/").content.decode()


def test_queue_never_lists_own_requests_or_other_teams_for_team_approvers(
    client: Client, submit: Any, requester: Any, outsider: Any
) -> None:
    submit()
    client.force_login(requester)
    assert "Nothing waits for you" in client.get("/approvals/").content.decode()
    client.force_login(outsider)
    assert "Nothing waits for you" in client.get("/approvals/").content.decode()


def test_security_officer_sees_high_risk_requests_of_every_team_but_not_low_risk(
    client: Client, submit: Any, submit_high: Any, mfa_security: Any
) -> None:
    low, high = submit(), submit_high()
    client.force_login(mfa_security)
    page = client.get("/approvals/").content.decode()
    assert f"queue-{high.pk}" in page and f"queue-{low.pk}" not in page


def test_needs_my_group_filter_hides_requests_my_group_already_approved(
    client: Client, submit_high: Any, mfa_approver: Any, mfa_security: Any
) -> None:
    waiting, done = submit_high(), submit_high()
    approve_request(actor=at_the_decision(mfa_security), request=done)
    client.force_login(mfa_security)
    page = client.get("/approvals/?mine=on").content.decode()
    assert f"queue-{waiting.pk}" in page and f"queue-{done.pk}" not in page
    # Without the filter the security officer may still reject or request changes on both.
    page = client.get("/approvals/").content.decode()
    assert f"queue-{waiting.pk}" in page and f"queue-{done.pk}" in page


def test_filters_by_environment_tier_team_and_purpose(
    client: Client, submit: Any, approver: Any, prod_workload: Any, open_prod_window: Any
) -> None:
    staging = submit()
    prod = submit(workload=prod_workload, purpose="telemetry")
    client.force_login(approver)

    def listed(query: str) -> set[int]:
        page = client.get(f"/approvals/?{query}").content.decode()
        return {r.pk for r in (staging, prod) if f"queue-{r.pk}" in page}

    assert listed("environment=prod") == {prod.pk}
    assert listed("tier=low") == {staging.pk}
    assert listed("purpose=telemetry") == {prod.pk}
    assert listed("team=payments") == {staging.pk, prod.pk}
    assert listed("team=platform") == set()


def test_queue_query_count_does_not_grow_with_rows(client: Client, approver: Any, team: Any, requester: Any) -> None:
    workload = WorkloadFactory(team=team, environment="staging")

    def count(n: int) -> int:
        ExceptionRequestFactory.create_batch(
            n, workload=workload, requester=requester, destinations=["a.example", "b.example", "c.example", "d.example"]
        )
        client.force_login(approver)
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/approvals/").status_code == 200
        return len(queries)

    small = count(2)
    ExceptionRequest.objects.all().delete()
    assert count(25) == small


def test_approving_a_high_risk_request_asks_for_confirmation(
    client: Client, submit_high: Any, mfa_approver: Any
) -> None:
    request = submit_high()
    client.force_login(mfa_approver)
    step_up(client, mfa_approver.totp_secret)
    response = client.post(f"/approvals/{request.pk}/approve/", {"reason": "ok", "next": "/approvals/"})
    assert response.status_code == 200
    assert "Yes, approve this high-risk request" in response.content.decode()
    assert not Decision.objects.exists()
    response = client.post(
        f"/approvals/{request.pk}/approve/", {"reason": "ok", "confirm": "on", "next": "/approvals/"}
    )
    assert response.status_code == 302 and response.url == "/approvals/"
    assert Decision.objects.get().counts_for == "owning-team"


def test_decide_from_the_list_approves_a_low_risk_request(client: Client, submit: Any, approver: Any) -> None:
    request = submit()
    client.force_login(approver)
    response = client.post(f"/approvals/{request.pk}/approve/", {"next": "/approvals/"}, follow=True)
    assert "1 grant(s) issued" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "active"


def test_request_page_shows_rule_missing_go_live_and_coloured_preview(
    client: Client, submit_high: Any, mfa_approver: Any
) -> None:
    request = submit_high(destinations=[{"host": "*.cdn.partner.example", "port": 443}])
    client.force_login(mfa_approver)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert 'id="approval-rule">high-risk<' in page
    assert "team approver and security officer missing" in page
    assert "+1 host for payments/checkout-api, 1 wildcard" in page
    assert 'class="diff-add"' in page


def test_api_shows_approval_go_live_and_allowed_actions(submit_high: Any, mfa_approver: Any, requester: Any) -> None:
    request = submit_high()
    api = APIClient()
    api.force_authenticate(mfa_approver)
    body = api.get(f"/api/v1/requests/{request.pk}/").json()
    assert body["approval"]["rule"] == "high-risk"
    assert body["approval"]["missing"] == [
        {"group": "owning-team", "count": 1},
        {"group": "security-officers", "count": 1},
    ]
    assert set(body["allowed_actions"]) == {"approve", "reject", "request_changes"}
    assert body["go_live"]["reason"] == "on approval"
    # Rule high-risk asks for MFA at the decision: the API cannot give it, the portal can.
    refused = api.post(f"/api/v1/requests/{request.pk}/approve/", {"reason": "fine"}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "mfa_step_up_required"
    approve_request(actor=at_the_decision(mfa_approver), request=request, reason="fine")
    body = api.get(f"/api/v1/requests/{request.pk}/").json()
    assert body["approval"]["given"][0] == {"group": "owning-team", "by": ["bob"]}
    assert "approve" not in body["allowed_actions"] and "reject" in body["allowed_actions"]
    api.force_authenticate(requester)
    body = api.get(f"/api/v1/requests/{request.pk}/").json()
    assert body["allowed_actions"] == ["cancel"]


def test_api_request_changes_then_resubmit(submit: Any, approver: Any, requester: Any) -> None:
    request = submit()
    api = APIClient()
    api.force_authenticate(approver)
    response = api.post(
        f"/api/v1/requests/{request.pk}/request-changes/", {"reason": "Shorter, please."}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "changes_requested"
    api.force_authenticate(requester)
    assert "resubmit" in api.get(f"/api/v1/requests/{request.pk}/").json()["allowed_actions"]
    response = api.post(
        f"/api/v1/requests/{request.pk}/resubmit/",
        {
            "destinations": [{"host": "api.partner.example", "port": 443}],
            "purpose": "partner_api",
            "data_class": "internal",
            "justification": "Settles card payments with the partner every night at 02:00.",
            "lifetime_hours": 48,
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["revision"], response.json()["lifetime_hours"]) == (
        "pending",
        2,
        48,
    )
    assert api.post(f"/api/v1/requests/{request.pk}/resubmit/", {}, format="json").status_code == 400


def test_resubmit_page_edits_and_resubmits(client: Client, submit: Any, approver: Any, requester: Any) -> None:
    from approvals.services import request_changes

    request = submit()
    request_changes(actor=approver, request=request, comment="Name the change ticket.")
    client.force_login(requester)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert "Edit and resubmit" in page
    form = client.get(f"/approvals/{request.pk}/resubmit/").content.decode()
    assert "Name the change ticket." in form
    response = client.post(
        f"/approvals/{request.pk}/resubmit/",
        {
            "workload": request.workload_id,
            "purpose": "partner_api",
            "data_class": "internal",
            "justification": "Settles card payments with the partner every night at 02:00.",
            "ticket_ref": "CHG-77",
            "lifetime_value": 3,
            "lifetime_unit": "days",
            "dest-TOTAL_FORMS": 1,
            "dest-INITIAL_FORMS": 1,
            "dest-MIN_NUM_FORMS": 1,
            "dest-MAX_NUM_FORMS": 20,
            "dest-0-host": "api.partner.example",
            "dest-0-port": 443,
            "dest-0-protocol": "tcp",
            "dest-0-tls_required": "on",
        },
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.ticket_ref, request.lifetime) == ("pending", "CHG-77", timedelta(days=3))
    client.force_login(approver)
    assert client.get(f"/approvals/{request.pk}/resubmit/").status_code == 403


def test_a_named_policy_group_member_sees_and_decides_what_the_policy_gives_them(
    settings: Any, tmp_path: Any, client: Client, submit: Any, team: Any
) -> None:
    from approvals.models import ApproverGroup
    from approvals.services import approve_request
    from tests.factories import UserFactory

    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules:\n  - name: default\n    require: [{group: egress-leads}]\n")
    settings.EGRESS_APPROVAL_POLICY_FILE = policy
    lead = UserFactory(username="lena")
    ApproverGroup.objects.create(name="egress-leads").members.add(lead)
    request = submit()
    client.force_login(lead)
    assert f"queue-{request.pk}" in client.get("/approvals/").content.decode()
    assert client.get(f"/requests/{request.pk}/").status_code == 200
    assert approve_request(actor=type(lead).objects.get(pk=lead.pk), request=request)
    assert client.get(f"/requests/{request.pk}/").status_code == 200  # decided: still visible
    stranger = UserFactory(username="stan")
    client.force_login(stranger)
    assert client.get(f"/requests/{request.pk}/").status_code == 404


TWO_HOSTS = [{"host": "a.partner.example", "port": 443}, {"host": "b.partner.example", "port": 443}]


@pytest.fixture
def sent_back(submit: Any, approver: Any) -> Any:
    """Submit a request and send it back to its requester with changes requested."""
    from approvals.services import request_changes

    def _make(**overrides: Any) -> Any:
        request = submit(**overrides)
        request_changes(actor=approver, request=request, comment="Only what you need.")
        return request

    return _make


def _resubmit_data(request: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "workload": request.workload_id,
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "ticket_ref": "CHG-77",
        "lifetime_value": 3,
        "lifetime_unit": "days",
        "dest-TOTAL_FORMS": len(rows),
        "dest-INITIAL_FORMS": 2,
        "dest-MIN_NUM_FORMS": 1,
        "dest-MAX_NUM_FORMS": 20,
    }
    for index, row in enumerate(rows):
        data.update({f"dest-{index}-{name}": value for name, value in row.items()})
    return data


def test_resubmit_page_offers_add_and_remove_with_the_request_forms_script(
    client: Client, sent_back: Any, requester: Any
) -> None:
    request = sent_back(destinations=TWO_HOSTS)
    client.force_login(requester)
    page = client.get(f"/approvals/{request.pk}/resubmit/").content.decode()
    assert page.count('class="link remove-row"') == 3  # two rows and the template for new ones
    assert 'id="add-destination"' in page and 'id="destination-template"' in page
    assert 'id="request-form"' in page and "/static/request_form.js" in page
    assert "<script>" not in page  # CSP: no inline scripts


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # Clearing a row's host drops the row, the first row included.
        (
            [
                {"host": "a.partner.example", "port": 443, "protocol": "tcp"},
                {"host": " ", "port": 443, "protocol": "tcp"},
            ],
            ["a.partner.example"],
        ),
        (
            [
                {"host": "", "port": 443, "protocol": "tcp"},
                {"host": "b.partner.example", "port": 443, "protocol": "tcp"},
            ],
            ["b.partner.example"],
        ),
        # Added rows are kept.
        (
            [
                {"host": "a.partner.example", "port": 443, "protocol": "tcp"},
                {"host": "", "port": 443, "protocol": "tcp"},
                {"host": "c.partner.example", "port": 8443, "protocol": "tcp"},
            ],
            ["a.partner.example", "c.partner.example"],
        ),
    ],
)
def test_resubmit_drops_cleared_rows_and_keeps_added_ones(
    client: Client, sent_back: Any, requester: Any, rows: list[dict[str, Any]], expected: list[str]
) -> None:
    request = sent_back(destinations=TWO_HOSTS)
    client.force_login(requester)
    response = client.post(f"/approvals/{request.pk}/resubmit/", _resubmit_data(request, rows))
    assert response.status_code == 302, response.content.decode()[:2000]
    request.refresh_from_db()
    assert request.status == "pending"
    assert sorted(d.host for d in request.destinations.all()) == expected


def test_resubmit_with_every_row_cleared_says_add_a_destination(client: Client, sent_back: Any, requester: Any) -> None:
    from exceptions.services.submissions import NO_DESTINATIONS

    request = sent_back()
    client.force_login(requester)
    rows = [{"host": "", "port": 443, "protocol": "tcp"}, {"host": "", "port": 443, "protocol": "tcp"}]
    response = client.post(f"/approvals/{request.pk}/resubmit/", _resubmit_data(request, rows))
    assert response.status_code == 400
    assert NO_DESTINATIONS in response.content.decode()
    request.refresh_from_db()
    assert request.status == "changes_requested"


def test_a_service_error_lands_on_its_row_when_an_earlier_row_was_cleared(
    client: Client, sent_back: Any, requester: Any
) -> None:
    request = sent_back()
    client.force_login(requester)
    rows = [
        {"host": "", "port": 443, "protocol": "tcp"},
        {"host": "a.partner.example", "port": 443, "protocol": "tcp"},
        {"host": "a.partner.example", "port": 443, "protocol": "tcp"},
    ]
    response = client.post(f"/approvals/{request.pk}/resubmit/", _resubmit_data(request, rows))
    assert response.status_code == 400
    formset = response.context["formset"]
    assert not formset.forms[0].errors
    assert formset.forms[1].errors or formset.forms[2].errors
