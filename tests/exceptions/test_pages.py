"""Pages: who sees what, the form's field-level errors, and flat query counts."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from approvals.services import approve_request
from audit.models import AuditEvent
from exceptions.models import ExceptionRequest
from tests.factories import ExceptionRequestFactory, GrantFactory, WorkloadFactory

pytestmark = pytest.mark.django_db


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def test_anonymous_users_are_sent_to_login(client: Client) -> None:
    response = client.get(reverse("request-list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_open_signup_is_closed(client: Client) -> None:
    response = client.get(reverse("account_signup"))
    assert b"Sign Up Closed" in response.content or response.status_code == 403


def test_requester_sees_own_request_with_timeline(client: Client, submit: Any, requester: Any, approver: Any) -> None:
    request = submit()
    approve_request(actor=approver, request=request, reason="looks right")
    response = login(client, requester).get(reverse("request-detail", args=[request.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    for text in ("request.submitted", "request.approved", "grant.issued", "api.partner.example", "looks right"):
        assert text in body


def test_outsider_gets_404_for_another_teams_request_and_grant(
    client: Client, submit: Any, approver: Any, outsider: Any
) -> None:
    request = submit()
    [grant] = approve_request(actor=approver, request=request)
    login(client, outsider)
    assert client.get(reverse("request-detail", args=[request.pk])).status_code == 404
    assert client.get(reverse("grant-detail", args=[grant.pk])).status_code == 404
    assert client.post(reverse("request-cancel", args=[request.pk])).status_code == 404
    assert client.post(reverse("grant-revoke", args=[grant.pk]), {"reason": "x"}).status_code == 404
    listing = client.get(reverse("request-list") + "?scope=all").content.decode()
    assert f"#{request.pk}<" not in listing


def test_auditor_sees_everything_but_cannot_decide(client: Client, submit: Any, auditor: Any) -> None:
    request = submit()
    login(client, auditor)
    assert client.get(reverse("request-detail", args=[request.pk])).status_code == 200
    assert client.get(reverse("audit-log")).status_code == 200
    assert client.post(reverse("request-approve", args=[request.pk])).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"


def test_audit_log_is_hidden_from_requesters(client: Client, requester: Any) -> None:
    assert login(client, requester).get(reverse("audit-log")).status_code == 404


def test_approver_approves_from_the_request_page(client: Client, submit: Any, approver: Any) -> None:
    request = submit()
    login(client, approver)
    queue = client.get(reverse("approval-queue")).content.decode()
    assert f"#{request.pk}" in queue
    response = client.post(reverse("request-approve", args=[request.pk]), {"reason": "ok"}, follow=True)
    assert "1 grant(s) issued" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "active"


def test_requester_cannot_approve_own_request_through_the_page(
    client: Client, submit: Any, requester: Any, team: Any
) -> None:
    from tests.factories import ApproverGroupFactory

    ApproverGroupFactory(teams=[team], members=[requester])
    request = submit()
    login(client, requester)
    assert f"#{request.pk}" not in client.get(reverse("approval-queue")).content.decode()
    assert client.post(reverse("request-approve", args=[request.pk])).status_code == 403


def test_reject_without_reason_shows_an_error_and_changes_nothing(client: Client, submit: Any, approver: Any) -> None:
    request = submit()
    response = login(client, approver).post(reverse("request-reject", args=[request.pk]), {"reason": ""}, follow=True)
    assert "Say why the request is rejected" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"


def _form_data(workload: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "workload": workload.pk,
        "purpose": "partner_api",
        "data_class": "internal",
        "justification": "Settles card payments with the partner every night at 02:00.",
        "ticket_ref": "CHG-7",
        "lifetime_value": 7,
        "lifetime_unit": "days",
        "desired_start": "",
        "dest-TOTAL_FORMS": 2,
        "dest-INITIAL_FORMS": 0,
        "dest-MIN_NUM_FORMS": 1,
        "dest-MAX_NUM_FORMS": 20,
        "dest-0-host": "api.partner.example",
        "dest-0-port": 443,
        "dest-0-protocol": "tcp",
        "dest-0-tls_required": "on",
        "dest-1-host": "*.cdn.partner.example",
        "dest-1-port": 443,
        "dest-1-protocol": "tcp",
    }
    data.update(overrides)
    return data


def test_request_form_creates_a_request_with_rows(client: Client, requester: Any, workload: Any) -> None:
    response = login(client, requester).post(reverse("request-create"), _form_data(workload))
    request = ExceptionRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == request.get_absolute_url()
    assert [(d.host, d.tls_required) for d in request.destinations.all()] == [
        ("api.partner.example", True),
        ("*.cdn.partner.example", False),
    ]


def test_request_form_puts_errors_on_the_right_row(client: Client, requester: Any, workload: Any) -> None:
    response = login(client, requester).post(
        reverse("request-create"), _form_data(workload, **{"dest-1-host": "192.168.1.1", "lifetime_value": 200})
    )
    assert response.status_code == 400
    dest_forms = response.context["formset"].forms
    assert "IP address literal" in dest_forms[1].errors["host"][0]
    assert not dest_forms[0].errors
    assert "cap" in response.context["form"].errors["lifetime_value"][0]
    assert ExceptionRequest.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_workload_picker_is_limited_to_the_users_teams(
    client: Client, requester: Any, workload: Any, other_team: Any
) -> None:
    foreign = WorkloadFactory(team=other_team, name="foreign-svc")
    response = login(client, requester).get(reverse("request-create"))
    choices = [str(c[0]) for c in response.context["form"].fields["workload"].choices]
    assert str(workload.pk) in choices and str(foreign.pk) not in choices
    posted = client.post(reverse("request-create"), _form_data(foreign))
    assert posted.status_code == 400 and "workload" in posted.context["form"].errors


def test_exception_template_prefills_the_destination(client: Client, requester: Any, workload: Any) -> None:
    response = login(client, requester).get(reverse("request-create") + "?host=api.partner.example&port=8443")
    assert response.context["formset"].forms[0].initial["host"] == "api.partner.example"


def test_live_preview_returns_tier_cap_and_row_errors(client: Client, requester: Any, prod_workload: Any) -> None:
    params = {
        "workload": prod_workload.pk,
        "purpose": "partner_api",
        "data_class": "internal",
        "lifetime_value": 40,
        "lifetime_unit": "days",
        "host": ["*.partner.example", "10.1.1.1"],
        "port": ["443", "443"],
    }
    body = login(client, requester).get(reverse("request-preview"), params).json()
    assert "destinations[1].host" in body["errors"]
    # No tier while a destination is invalid: it would be a guess.
    assert "risk" not in body
    body = client.get(reverse("request-preview"), {**params, "host": ["*.partner.example"], "port": ["443"]}).json()
    assert body["risk"]["tier"] == "high"
    assert body["risk"]["lifetime_cap"] == "7 days"
    assert "lifetime" in body["errors"]


def test_csrf_is_enforced_on_decisions(submit: Any, approver: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    request = submit()
    assert client.post(reverse("request-approve", args=[request.pk])).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"


def test_grant_views_split_by_status(client: Client, requester: Any, workload: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    soon = GrantFactory(request__workload=workload, host="soon.example", expires_at=timezone.now() + timedelta(days=3))
    later = GrantFactory(
        request__workload=workload, host="later.example", expires_at=timezone.now() + timedelta(days=60)
    )
    gone = GrantFactory(request__workload=workload, host="gone.example", status="revoked")
    login(client, requester)
    expiring = client.get(reverse("grant-list") + "?view=expiring").content.decode()
    assert soon.host in expiring and later.host not in expiring
    revoked = client.get(reverse("grant-list") + "?view=revoked").content.decode()
    assert gone.host in revoked and soon.host not in revoked


@pytest.mark.parametrize(
    ("url_name", "query", "make"),
    [
        ("request-list", "?scope=all", "request"),
        ("approval-queue", "", "request"),
        ("grant-list", "?view=active", "grant"),
        ("audit-log", "", "request"),
    ],
)
def test_list_page_query_count_does_not_grow_with_rows(
    client: Client,
    django_assert_max_num_queries: Any,
    security_officer: Any,
    approver: Any,
    requester: Any,
    workload: Any,
    url_name: str,
    query: str,
    make: str,
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = approver if url_name == "approval-queue" else security_officer
    login(client, user)

    def populate(n: int) -> None:
        for _ in range(n):
            if make == "grant":
                GrantFactory(request__workload=workload, request__requester=requester)
            else:
                ExceptionRequestFactory(workload=workload, requester=requester)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse(url_name) + query).status_code == 200
        return len(ctx.captured_queries)

    populate(2)
    few = count()
    populate(20)
    many = count()
    assert many == few, f"{url_name}: {few} queries with 2 rows, {many} with 22"


def test_a_draft_is_submitted_from_its_page_by_its_author(
    client: Client, submit: Any, requester: Any, teammate: Any
) -> None:
    draft = submit(draft=True)
    login(client, teammate)
    client.post(reverse("request-submit-draft", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.status == "draft"
    login(client, requester)
    page = client.get(reverse("request-detail", args=[draft.pk])).content.decode()
    assert "submit_draft" in page
    client.post(reverse("request-submit-draft", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.status == "pending"


def test_renewal_is_prefilled_from_the_grant_and_linked_to_it(
    client: Client, submit: Any, approver: Any, requester: Any, outsider: Any
) -> None:
    [grant] = approve_request(
        actor=approver, request=submit(destinations=[{"host": "files.partner.example", "port": 8443}])
    )
    login(client, outsider)
    refused = client.get(reverse("request-create") + f"?renews={grant.pk}")
    assert refused.status_code == 400 and b"renews" in refused.content
    login(client, requester)
    page = client.get(reverse("request-create") + f"?renews={grant.pk}")
    assert page.context["formset"].forms[0].initial["host"] == "files.partner.example"
    assert page.context["form"].initial["renews"] == grant.pk
    data = _form_data(
        grant.workload,
        **{"renews": grant.pk, "dest-TOTAL_FORMS": 1, "dest-0-host": "files.partner.example", "dest-0-port": 8443},
    )
    response = client.post(reverse("request-create"), data)
    renewal = ExceptionRequest.objects.exclude(pk=grant.request_id).get()
    assert response.status_code == 302 and renewal.renews == grant
    assert f"grant #{grant.pk}" in client.get(renewal.get_absolute_url()).content.decode()


def test_the_request_form_says_the_justifications_minimum_before_submit(
    client: Client, requester: Any, workload: Any, settings: Any
) -> None:
    client.force_login(requester)
    page = client.get(reverse("request-create")).content.decode()
    assert f"At least {settings.EGRESS_JUSTIFICATION_MIN_LENGTH} characters" in page


def test_the_decision_row_says_approved_or_rejected_not_the_status(
    client: Client, submit: Any, approver: Any, requester: Any
) -> None:
    from approvals.services import reject_request

    approved, rejected = submit(), submit(destinations=[{"host": "b.partner.example", "port": 443}])
    approve_request(actor=approver, request=approved)
    reject_request(actor=approver, request=rejected, reason="Use the proxy.")
    client.force_login(requester)
    page = client.get(f"/requests/{approved.pk}/").content.decode()
    assert f'<dd id="approved-by">Approved by {approver.get_username()} <small>(team approver, ' in page
    page = client.get(f"/requests/{rejected.pk}/").content.decode()
    assert f'<dt>Decision</dt><dd id="rejected-by">Rejected by {approver.get_username()} <small>(' in page
    assert "Use the proxy." in page and "Approved by" not in page
    assert "Active by" not in page
