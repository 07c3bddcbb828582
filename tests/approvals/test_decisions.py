"""Quorum, separation of duties, request changes and resubmit, narrowing, stale expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from approvals.access import approval_state
from approvals.gate import StepUpRequired
from approvals.models import Decision
from approvals.policy import current_policy
from approvals.services import approve_request, expire_stale_requests, reject_request, request_changes
from audit.models import AuditEvent
from exceptions.access import SECURITY_GROUP
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.requests import resubmit_request
from exceptions.state import TransitionError
from foundation.outbox.models import OutboxMessage
from tests.approvals.conftest import at_the_decision, enrol_mfa
from tests.factories import ApproverGroupFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _events(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


# --- Quorum and separation of duties, as a matrix -------------------------------


@pytest.fixture
def people(team: Any, requester: Any, mfa_approver: Any, mfa_security: Any) -> dict[str, Any]:
    """requester; teammate approver (team member and approver); outside approver (bob);
    security officer (sec, outside); one person in two groups (approver and security officer)."""
    teammate = UserFactory(username="tina")
    MembershipFactory(team=team, user=teammate)
    ApproverGroupFactory(name="Payments approvers", teams=[team], members=[teammate])
    enrol_mfa(teammate)
    teammate_security = UserFactory(username="tess")
    MembershipFactory(team=team, user=teammate_security)
    Group.objects.get(name=SECURITY_GROUP).user_set.add(teammate_security)
    enrol_mfa(teammate_security)
    both = UserFactory(username="bea")
    ApproverGroupFactory(name="Second approvers", teams=[team], members=[both])
    Group.objects.get(name=SECURITY_GROUP).user_set.add(both)
    enrol_mfa(both)
    return {
        "requester": requester,
        "teammate approver": teammate,
        "outside approver": mfa_approver,
        "security officer": mfa_security,
        "teammate security officer": teammate_security,
        "in two groups": both,
    }


@pytest.mark.parametrize(
    ("who", "counts_for", "refusal"),
    [
        ("requester", None, "Separation of duties"),
        ("teammate approver", "owning-team", None),
        ("outside approver", "owning-team", None),
        ("security officer", "security-officers", None),
        ("teammate security officer", None, "outside team Payments"),
        ("in two groups", "security-officers", None),
    ],
)
def test_first_approval_of_a_high_risk_request_matrix(
    people: dict[str, Any], submit_high: Any, who: str, counts_for: str | None, refusal: str | None
) -> None:
    request = submit_high()
    if refusal:
        with pytest.raises(PermissionDenied, match=refusal):
            approve_request(actor=at_the_decision(people[who]), request=request)
        assert not Decision.objects.exists()
        return
    assert approve_request(actor=at_the_decision(people[who]), request=request) == []
    decision = Decision.objects.get()
    assert (decision.actor, decision.counts_for, decision.kind) == (people[who], counts_for, "approve")
    assert decision.policy_revision == current_policy().revision and decision.rule == "high-risk"
    request.refresh_from_db()
    assert request.status == "pending"
    assert _events("request.approval_added") == 1


def test_one_person_in_two_groups_counts_once(people: dict[str, Any], submit_high: Any) -> None:
    request = submit_high()
    approve_request(actor=at_the_decision(people["in two groups"]), request=request)
    with pytest.raises(PermissionDenied, match="one person counts once"):
        approve_request(actor=at_the_decision(people["in two groups"]), request=request)
    state = approval_state(ExceptionRequest.objects.get(pk=request.pk))
    assert state.missing_summary() == "team approver missing"
    # The team approver can still complete the quorum: the person in two groups filled the scarcer one.
    assert approve_request(actor=at_the_decision(people["outside approver"]), request=request)


def test_team_and_security_approvals_together_approve_and_issue_grants(
    people: dict[str, Any], submit_high: Any
) -> None:
    request = submit_high()
    assert approve_request(actor=at_the_decision(people["outside approver"]), request=request) == []
    with pytest.raises(PermissionDenied, match="already given"):
        approve_request(actor=at_the_decision(people["teammate approver"]), request=request)
    grants = approve_request(
        actor=at_the_decision(people["security officer"]), request=request, reason="Reviewed the DPA."
    )
    assert len(grants) == 1 and grants[0].status == "active"
    request.refresh_from_db()
    assert request.status == "active"
    event = AuditEvent.objects.get(action="request.approved")
    assert event.after["approved_by"] == ["bob", "sec"] and event.after["rule"] == "high-risk"


def test_mfa_is_required_when_the_rule_says_so(submit_high: Any, approver: Any) -> None:
    request = submit_high()
    with pytest.raises(PermissionDenied, match="needs MFA at the decision and you have no authenticator"):
        approve_request(actor=at_the_decision(approver), request=request)
    enrol_mfa(approver)
    approver = type(approver).objects.get(pk=approver.pk)  # fresh: the profile is cached per user object
    with pytest.raises(StepUpRequired, match="only a browser session gives"):
        approve_request(actor=approver, request=request)  # a bare user (a job, a fixture) never has a step-up
    assert not Decision.objects.exists()
    assert approve_request(actor=at_the_decision(approver), request=request) == []


def test_a_security_officer_alone_cannot_supply_the_team_approval(submit: Any, security_officer: Any) -> None:
    with pytest.raises(PermissionDenied, match="Only approvers for team Payments"):
        approve_request(actor=security_officer, request=submit())


def test_low_risk_needs_one_team_approver_and_the_request_page_says_approved_by(
    client: Any, submit: Any, approver: Any, requester: Any
) -> None:
    request = submit()
    approve_request(actor=approver, request=request)
    client.force_login(requester)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert "Approved by bob" in page and "default" in page


# --- Reject, request changes, resubmit --------------------------------------------


def test_reject_needs_a_reason_and_tells_the_requester(submit: Any, approver: Any) -> None:
    request = submit()
    with pytest.raises(ValidationError, match="Say why"):
        reject_request(actor=approver, request=request, reason=" ")
    reject_request(actor=approver, request=request, reason="Use the mirror.")
    assert Decision.objects.get().kind == "reject"
    assert _events("request.rejected") == 1
    mail = OutboxMessage.objects.get(idempotency_key__startswith="request-rejected:")
    assert mail.payload["to"] == ["alice@example.org"] and "Use the mirror." in mail.payload["text"]


def test_request_changes_then_resubmit_resets_earlier_approvals(
    people: dict[str, Any], submit_high: Any, requester: Any
) -> None:
    request = submit_high()
    approve_request(actor=at_the_decision(people["outside approver"]), request=request)
    with pytest.raises(ValidationError, match="Say what should change"):
        request_changes(actor=at_the_decision(people["security officer"]), request=request, comment="")
    request_changes(actor=at_the_decision(people["security officer"]), request=request, comment="Drop the second host.")
    request.refresh_from_db()
    assert request.status == "changes_requested"
    assert _events("request.changes_requested") == 1
    with pytest.raises(TransitionError):
        approve_request(actor=at_the_decision(people["teammate approver"]), request=request)
    with pytest.raises(PermissionDenied, match="Only the requester"):
        resubmit_request(
            actor=at_the_decision(people["outside approver"]),
            request=request,
            destinations=[{"host": "api.partner.example", "port": 443}],
            purpose="partner_api",
            data_class="restricted",
            justification="Settles card payments with the partner every night at 02:00.",
            lifetime=timedelta(days=3),
        )
    resubmit_request(
        actor=requester,
        request=request,
        destinations=[{"host": "api.partner.example", "port": 443}],
        purpose="partner_api",
        data_class="restricted",
        justification="Settles card payments with the partner every night at 02:00 (one host only).",
        lifetime=timedelta(days=3),
    )
    request.refresh_from_db()
    assert (request.status, request.revision, request.lifetime) == ("pending", 2, timedelta(days=3))
    assert request.decided_by is None and request.decision_reason == ""
    event = AuditEvent.objects.get(action="request.resubmitted")
    assert event.before["revision"] == 1 and event.after["revision"] == 2
    state = approval_state(request)
    assert state.approvers == [] and state.missing_summary() == "team approver and security officer missing"
    # bob approved revision 1; on revision 2 his approval counts again, once.
    assert approve_request(actor=at_the_decision(people["outside approver"]), request=request) == []
    assert Decision.objects.filter(kind="approve", request_revision=2).count() == 1


def test_resubmit_validates_like_submit_and_leaves_nothing_half_written(
    submit: Any, approver: Any, requester: Any
) -> None:
    request = submit()
    request_changes(actor=approver, request=request, comment="Name the ticket.")
    with pytest.raises(ValidationError) as caught:
        resubmit_request(
            actor=requester,
            request=request,
            destinations=[{"host": "10.0.0.1", "port": 443}],
            purpose="partner_api",
            data_class="internal",
            justification="short",
            lifetime=timedelta(days=3),
        )
    assert "justification" in caught.value.message_dict
    request.refresh_from_db()
    assert request.status == "changes_requested" and request.revision == 1
    assert [d.host for d in request.destinations.all()] == ["api.partner.example"]


# --- Narrowing ---------------------------------------------------------------------


def test_an_approver_narrows_lifetime_and_destinations_before_approving(submit: Any, approver: Any) -> None:
    request = submit(
        destinations=[{"host": "a.partner.example", "port": 443}, {"host": "b.partner.example", "port": 443}],
        lifetime=timedelta(days=7),
    )
    keep = request.destinations.get(host="a.partner.example").pk
    grants = approve_request(
        actor=approver, request=request, lifetime=timedelta(days=2), keep_destination_ids=[keep], reason="a only"
    )
    assert [g.host for g in grants] == ["a.partner.example"]
    assert grants[0].expires_at - grants[0].valid_from == timedelta(days=2)
    event = AuditEvent.objects.get(action="request.narrowed")
    assert event.before["lifetime_hours"] == 168 and event.after["lifetime_hours"] == 48
    assert event.after["dropped"] == ["b.partner.example:443/tcp"]


@pytest.mark.parametrize(
    ("lifetime", "keep", "field", "words"),
    [
        (timedelta(days=9), None, "lifetime", "cannot lengthen"),
        (None, [], "destinations", "Keep at least one"),
        (None, [999999], "destinations", "never add them"),
    ],
)
def test_narrowing_never_widens(submit: Any, approver: Any, lifetime: Any, keep: Any, field: str, words: str) -> None:
    request = submit(lifetime=timedelta(days=7))
    with pytest.raises(ValidationError) as caught:
        approve_request(actor=approver, request=request, lifetime=lifetime, keep_destination_ids=keep)
    assert words in " ".join(caught.value.message_dict[field])
    request.refresh_from_db()
    assert request.status == "pending" and request.lifetime == timedelta(days=7)
    assert not Decision.objects.exists() and not _events("request.narrowed")


def test_max_lifetime_of_the_rule_is_enforced_at_approval(
    settings: Any, tmp_path: Any, submit: Any, approver: Any
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nrules:\n  - name: default\n    max_lifetime: 3d\n    require: [{group: owning-team}]\n"
    )
    settings.EGRESS_APPROVAL_POLICY_FILE = policy
    request = submit(lifetime=timedelta(days=7))
    with pytest.raises(ValidationError, match="at most 3 days"):
        approve_request(actor=approver, request=request)
    assert approve_request(actor=approver, request=request, lifetime=timedelta(days=3))


# --- Stale pending requests ---------------------------------------------------------


def test_pending_with_no_decision_for_14_days_expires_with_a_notice(submit: Any, approver: Any) -> None:
    now = timezone.now()
    stale = submit()
    fresh = submit()
    ExceptionRequest.objects.filter(pk__in=[stale.pk, fresh.pk]).update(updated_at=now - timedelta(days=15))
    fresh.refresh_from_db()
    Decision.objects.create(
        request=fresh,
        actor=approver,
        kind="approve",
        counts_for="someone-else",
        rule="default",
        policy_revision="x",
        request_revision=1,
        created_at=now - timedelta(days=1),
    )
    assert expire_stale_requests(now=now) == 1
    assert ExceptionRequest.objects.get(pk=stale.pk).status == "expired"
    assert ExceptionRequest.objects.get(pk=fresh.pk).status == "pending"
    assert AuditEvent.objects.filter(action="request.expired", object_id=str(stale.pk)).count() == 1
    notice = OutboxMessage.objects.get(idempotency_key=f"request-expired:{stale.pk}:r1")
    assert "no decision for 14 days" in notice.payload["text"]
    assert expire_stale_requests(now=now) == 0
    assert not Grant.objects.exists()
