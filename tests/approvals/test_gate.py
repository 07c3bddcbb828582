"""The decision gate: MFA at the decision on every channel, and nothing written when it refuses."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from approvals import gate
from approvals.actions import request_actions
from approvals.models import Decision
from approvals.services import approve_request, reject_request
from audit.models import AuditEvent
from exceptions.models import ExceptionRequest
from exceptions.tokens import create_token
from tests.api_problems import problem
from tests.approvals.conftest import STEP_UP_URL, at_the_decision, enrol_mfa, step_up, totp_code
from tests.factories import ApproverGroupFactory, UserFactory

pytestmark = pytest.mark.django_db


def bearer(user: Any, name: str = "chatops") -> APIClient:
    _, key = create_token(actor=user, user=user, name=name, scopes=["requests:read", "requests:decide"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def snapshot(request: ExceptionRequest) -> tuple[Any, ...]:
    """Everything a decision could change: the row, its decisions, the audit log."""
    row = ExceptionRequest.objects.values().get(pk=request.pk)
    return (row, list(Decision.objects.values()), AuditEvent.objects.count())


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- An API token never gives MFA at the decision -----------------------------------


@pytest.mark.parametrize("action", ["approve", "reject", "request-changes"])
def test_a_token_on_an_mfa_rule_gets_a_403_problem_with_the_step_up_page_and_nothing_is_written(
    submit_high: Any, mfa_approver: Any, action: str
) -> None:
    request = submit_high()
    client = bearer(mfa_approver)
    before = snapshot(request)
    response = client.post(f"/api/v1/requests/{request.pk}/{action}/", {"reason": "ok"}, format="json")
    body = problem(response, 403)
    assert response["Content-Type"] == "application/problem+json"
    assert body["code"] == "mfa_step_up_required" and body["rule"] == "high-risk"
    assert "API token cannot give" in body["detail"]
    assert body["step_up_url"].endswith(f"/accounts/2fa/reauthenticate/?next=%2Frequests%2F{request.pk}%2F")
    assert body["decide_url"].endswith(f"/requests/{request.pk}/") and body["step_up_seconds"] == 300
    assert snapshot(request) == before


def test_a_token_decides_a_rule_without_mfa_and_the_audit_names_the_channel(submit: Any, approver: Any) -> None:
    request = submit()
    response = bearer(approver, "ticketing").post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "active"
    event = AuditEvent.objects.get(action="request.approved")
    assert (event.after["via"], event.after["token"], event.after["mfa_at"]) == ("token", "ticketing", None)
    assert event.context["via"] == "token" and event.context["token"] == "ticketing"


def test_a_token_is_not_offered_what_the_gate_refuses_it_on_an_mfa_rule(
    submit: Any, submit_high: Any, mfa_approver: Any
) -> None:
    """allowed_actions and ?decidable=true answer for the channel: a token cannot decide an mfa rule."""
    mfa_rule, plain_rule = submit_high(), submit()
    client = bearer(mfa_approver, "ticketing")
    decidable = client.get("/api/v1/requests/", {"decidable": "true"}).json()["results"]
    assert [r["id"] for r in decidable] == [plain_rule.pk]
    offered = client.get(f"/api/v1/requests/{mfa_rule.pk}/").json()["allowed_actions"]
    assert not {"approve", "reject", "request_changes"} & set(offered)
    assert "approve" in client.get(f"/api/v1/requests/{plain_rule.pk}/").json()["allowed_actions"]
    # The same person in a browser is offered the decision (the gate then asks for the step-up).
    assert request_actions(mfa_approver, mfa_rule).allows("approve")


# --- A browser session needs a fresh step-up -----------------------------------------


def test_a_session_without_a_step_up_is_sent_to_it_and_nothing_is_written(submit_high: Any, mfa_approver: Any) -> None:
    request = submit_high()
    before = snapshot(request)
    client = signed_in(mfa_approver)
    response = client.post(f"/approvals/{request.pk}/approve/", {"reason": "Vendor on the list.", "confirm": "on"})
    assert response.status_code == 302
    back = f"/approvals/{request.pk}/approve/after-step-up/"
    assert response["Location"] == f"{STEP_UP_URL}?next={back.replace('/', '%2F')}"
    assert snapshot(request) == before
    # The same session through the API is refused the same way: the channel is the session, not the URL.
    api = client.post(f"/api/v1/requests/{request.pk}/approve/", {}, content_type="application/json")
    assert problem(api, 403)["code"] == "mfa_step_up_required"
    assert snapshot(request) == before


def test_after_the_step_up_the_person_confirms_the_same_decision_and_it_counts(
    submit_high: Any, mfa_approver: Any
) -> None:
    request = submit_high()
    client = signed_in(mfa_approver)
    first = client.post(f"/approvals/{request.pk}/approve/", {"reason": "Vendor on the list.", "confirm": "on"})
    back = f"/approvals/{request.pk}/approve/after-step-up/"
    response = client.post(first["Location"], {"code": totp_code(mfa_approver.totp_secret)})
    assert response.status_code == 302 and response["Location"] == back
    page = client.get(back).content.decode()
    assert "MFA step-up passed" in page and "Vendor on the list." in page and "high-risk" in page
    assert not Decision.objects.exists()
    done = client.post(f"/approvals/{request.pk}/approve/", {"reason": "Vendor on the list.", "confirm": "on"})
    assert done.status_code == 302
    decision = Decision.objects.get()
    assert (decision.actor, decision.counts_for, decision.reason) == (
        mfa_approver,
        "owning-team",
        "Vendor on the list.",
    )
    event = AuditEvent.objects.get(action="request.approval_added")
    assert event.after["via"] == "session" and event.context["via"] == "session"
    stepped_at = datetime.fromisoformat(event.after["mfa_at"])
    assert abs((decision.created_at - stepped_at).total_seconds()) < 60
    assert event.context["mfa_at"] == event.after["mfa_at"]


def test_a_step_up_older_than_the_window_is_refused_and_asked_again(
    settings: Any, submit_high: Any, mfa_approver: Any
) -> None:
    request = submit_high()
    client = signed_in(mfa_approver)
    step_up(client, mfa_approver.totp_secret)
    settings.EGRESS_STEP_UP_SECONDS = 1
    time.sleep(2.1)
    before = snapshot(request)
    response = client.post(f"/approvals/{request.pk}/approve/", {"confirm": "on"})
    assert response.status_code == 302 and response["Location"].startswith(STEP_UP_URL)
    assert snapshot(request) == before
    with pytest.raises(gate.StepUpRequired, match="more than 1 seconds ago"):
        approve_request(actor=at_the_decision(mfa_approver, at=request.created_at), request=request)
    settings.EGRESS_STEP_UP_SECONDS = 300
    assert client.post(f"/approvals/{request.pk}/approve/", {"confirm": "on"}).status_code == 302
    assert Decision.objects.get().actor == mfa_approver


def test_within_the_window_the_approval_counts_and_the_audit_records_channel_and_step_up(
    submit_high: Any, mfa_approver: Any, mfa_security: Any
) -> None:
    request = submit_high()
    stepped = datetime.now().astimezone() - timedelta(seconds=200)
    approve_request(actor=at_the_decision(mfa_approver, at=stepped), request=request)
    grants = approve_request(actor=at_the_decision(mfa_security), request=request, reason="DPA reviewed.")
    assert len(grants) == 1
    event = AuditEvent.objects.get(action="request.approved")
    assert event.after["via"] == "session" and event.after["mfa_at"] is not None
    first = AuditEvent.objects.get(action="request.approval_added")
    assert datetime.fromisoformat(first.after["mfa_at"]) == stepped


def test_reject_on_an_mfa_rule_needs_the_step_up_too(submit_high: Any, mfa_approver: Any) -> None:
    request = submit_high()
    with pytest.raises(gate.StepUpRequired):
        reject_request(actor=mfa_approver, request=request, reason="No.")
    assert not Decision.objects.exists()
    reject_request(actor=at_the_decision(mfa_approver), request=request, reason="Use the mirror.")
    assert ExceptionRequest.objects.get(pk=request.pk).status == "rejected"


# --- Approvers must enrol MFA, on every channel ---------------------------------------


def test_an_unenrolled_approver_is_refused_through_the_api_too(settings: Any, submit: Any, approver: Any) -> None:
    settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS = True
    request = submit()  # rule default: no MFA at the decision, but approvers must enrol
    client = bearer(approver)
    before = snapshot(request)
    body = problem(client.post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json"), 403)
    assert body["code"] == "mfa_enrolment_required" and "enrol an authenticator" in body["detail"]
    session = signed_in(approver)
    api = session.post(f"/api/v1/requests/{request.pk}/reject/", {"reason": "x"}, content_type="application/json")
    assert problem(api, 403)["code"] == "mfa_enrolment_required"
    assert snapshot(request) == before
    assert not request_actions(approver, request).allows("approve")
    assert client.get("/api/v1/requests/?decidable=true").json()["results"] == []
    enrol_mfa(approver)
    assert client.post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json").status_code == 200


# --- Filing on someone's behalf -------------------------------------------------------


def test_the_filer_on_behalf_never_decides_and_never_sees_it_in_the_queue(
    submit: Any, approver: Any, requester: Any, team: Any
) -> None:
    request = submit(actor=approver, on_behalf_of=requester)
    assert request.filed_by == approver and request.requester == requester
    actions = request_actions(approver, request)
    assert "filed this request for someone else" in actions.why_not("approve")
    assert "filed this request for someone else" in actions.why_not("reject")
    assert "queue-" not in signed_in(approver).get("/approvals/").content.decode()
    assert bearer(approver).get("/api/v1/requests/?decidable=true").json()["results"] == []
    other = UserFactory(username="erin")
    ApproverGroupFactory(name="Second approvers", teams=[team], members=[other])
    listed = bearer(other).get("/api/v1/requests/?decidable=true").json()["results"]
    assert [r["id"] for r in listed] == [request.pk]
