"""The request and grant state machines, driven through the services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from approvals.services import approve_request, reject_request
from audit.models import AuditEvent
from exceptions.models import ExceptionRequest, Grant, RequestDestination
from exceptions.services.batches import activate_due_grants, expire_due_grants
from exceptions.services.grants import revoke_grant
from exceptions.services.requests import cancel_request, submit_draft
from exceptions.state import REQUEST_TRANSITIONS, TransitionError, check_request_transition

pytestmark = pytest.mark.django_db


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action))


def test_transition_table_allows_only_the_documented_paths() -> None:
    assert REQUEST_TRANSITIONS["pending"] == {
        "approved",
        "active",
        "rejected",
        "cancelled",
        "changes_requested",
        "expired",
    }
    assert REQUEST_TRANSITIONS["changes_requested"] == {"pending", "cancelled"}
    for final in ("expired", "revoked", "rejected", "cancelled"):
        assert REQUEST_TRANSITIONS[final] == frozenset()
    with pytest.raises(TransitionError, match="cannot go from rejected to active"):
        check_request_transition("rejected", "active")


def test_submit_creates_a_pending_request_and_one_audit_event(submit: Any, requester: Any) -> None:
    request = submit(
        destinations=[{"host": "API.Partner.Example.", "port": "443"}, {"host": "*.cdn.partner.example", "port": 443}]
    )
    assert request.status == "pending"
    assert [d.host for d in request.destinations.all()] == ["api.partner.example", "*.cdn.partner.example"]
    assert request.risk_tier == "medium"  # wildcard
    [event] = events("request.submitted")
    assert (event.object_id, event.actor_id, event.after["status"]) == (str(request.pk), requester.pk, "pending")
    assert len(event.after["destinations"]) == 2


def test_bad_input_names_each_field_and_writes_nothing(submit: Any) -> None:
    with pytest.raises(ValidationError) as info:
        submit(
            destinations=[{"host": "10.0.0.1", "port": 443}, {"host": "ok.example", "port": 70000}],
            justification="because",
            purpose="fun",
        )
    errors = info.value.message_dict
    assert set(errors) >= {"destinations[0].host", "destinations[1].port", "justification", "purpose"}
    assert "DNS name" in errors["destinations[0].host"][0]
    assert ExceptionRequest.objects.count() == 0
    assert RequestDestination.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_lifetime_over_the_tier_cap_is_refused_with_the_cap(submit: Any, prod_workload: Any) -> None:
    with pytest.raises(ValidationError) as info:
        submit(workload=prod_workload, lifetime=timedelta(days=45))
    [message] = info.value.message_dict["lifetime"]
    assert "45 days exceeds the 30 days cap for medium-risk" in message


def test_duplicate_destinations_are_refused(submit: Any) -> None:
    with pytest.raises(ValidationError) as info:
        submit(destinations=[{"host": "a.example", "port": 443}, {"host": "A.example.", "port": 443}])
    assert "repeats destination 1" in info.value.message_dict["destinations[1].host"][0]


def test_requester_must_belong_to_the_workload_team(submit: Any, outsider: Any) -> None:
    with pytest.raises(ValidationError) as info:
        submit(actor=outsider)
    [message] = info.value.message_dict["workload"]
    # The same answer as for an unknown id: no team or workload name leaks.
    assert "No workload with this id" in message
    assert "Payments" not in message and "checkout" not in message


def test_approval_issues_one_active_grant_per_destination(submit: Any, approver: Any) -> None:
    request = submit(
        destinations=[{"host": "a.partner.example", "port": 443}, {"host": "b.partner.example", "port": 8443}]
    )
    now = timezone.now()
    grants = approve_request(actor=approver, request=request, reason="ok", now=now)
    request.refresh_from_db()
    assert request.status == "active"
    assert request.decided_by == approver
    assert sorted((g.host, g.port, g.status) for g in grants) == [
        ("a.partner.example", 443, "active"),
        ("b.partner.example", 8443, "active"),
    ]
    assert all(g.expires_at == now + timedelta(days=7) and g.identity == request.workload.identity for g in grants)
    assert len(events("request.approved")) == 1
    assert len(events("grant.issued")) == 2


def test_requester_cannot_approve_own_request(submit: Any, requester: Any, team: Any) -> None:
    from tests.factories import ApproverGroupFactory

    ApproverGroupFactory(teams=[team], members=[requester])
    request = submit()
    with pytest.raises(PermissionDenied, match="Separation of duties"):
        approve_request(actor=requester, request=request)
    request.refresh_from_db()
    assert request.status == "pending"
    assert not Grant.objects.exists()


def test_approver_of_another_team_cannot_approve(submit: Any, other_team: Any) -> None:
    from tests.factories import ApproverGroupFactory, UserFactory

    foreign = UserFactory(username="eve")
    ApproverGroupFactory(teams=[other_team], members=[foreign])
    with pytest.raises(PermissionDenied, match="Only approvers for team Payments"):
        approve_request(actor=foreign, request=submit())


def test_reject_requires_a_reason_and_is_final(submit: Any, approver: Any) -> None:
    request = submit()
    with pytest.raises(ValidationError):
        reject_request(actor=approver, request=request, reason="  ")
    reject_request(actor=approver, request=request, reason="Use the mirror.")
    request.refresh_from_db()
    assert (request.status, request.decision_reason) == ("rejected", "Use the mirror.")
    with pytest.raises(TransitionError, match="is rejected now; only pending requests are decided"):
        approve_request(actor=approver, request=request)
    assert len(events("request.rejected")) == 1


def test_second_approval_of_an_approved_request_is_an_illegal_transition(submit: Any, approver: Any) -> None:
    request = submit()
    approve_request(actor=approver, request=request)
    with pytest.raises(TransitionError):
        approve_request(actor=approver, request=request)
    assert Grant.objects.count() == 1


def test_cancel_by_requester_and_not_by_outsider(submit: Any, requester: Any, outsider: Any) -> None:
    request = submit()
    with pytest.raises(PermissionDenied):
        cancel_request(actor=outsider, request=request)
    cancel_request(actor=requester, request=request, reason="no longer needed")
    request.refresh_from_db()
    assert request.status == "cancelled"
    with pytest.raises(TransitionError):
        cancel_request(actor=requester, request=request)


def test_draft_then_submit(submit: Any, requester: Any) -> None:
    draft = submit(draft=True)
    assert draft.status == "draft"
    submit_draft(actor=requester, request=draft)
    draft.refresh_from_db()
    assert draft.status == "pending"
    assert [e.action for e in AuditEvent.objects.order_by("seq")] == ["request.drafted", "request.submitted"]


def test_future_start_is_scheduled_then_activated(submit: Any, approver: Any) -> None:
    now = timezone.now()
    request = submit(desired_start=now + timedelta(hours=2))
    [grant] = approve_request(actor=approver, request=request, now=now)
    request.refresh_from_db()
    assert (request.status, grant.status) == ("approved", "scheduled")
    assert activate_due_grants(now=now + timedelta(hours=1)) == 0
    assert activate_due_grants(now=now + timedelta(hours=3)) == 1
    grant.refresh_from_db()
    request.refresh_from_db()
    assert (request.status, grant.status) == ("active", "active")
    assert len(events("grant.activated")) == 1 and len(events("request.active")) == 1


def test_expiry_closes_grants_and_request_and_is_idempotent(submit: Any, approver: Any) -> None:
    now = timezone.now()
    request = submit(destinations=[{"host": "a.example", "port": 443}, {"host": "b.example", "port": 443}])
    approve_request(actor=approver, request=request, now=now)
    assert expire_due_grants(now=now + timedelta(days=6)) == 0
    assert expire_due_grants(now=now + timedelta(days=7)) == 2
    assert expire_due_grants(now=now + timedelta(days=8)) == 0
    request.refresh_from_db()
    assert request.status == "expired"
    assert set(Grant.objects.values_list("status", flat=True)) == {"expired"}
    assert len(events("grant.expired")) == 2
    assert len(events("request.expired")) == 1


def test_expire_in_small_batches(submit: Any, approver: Any) -> None:
    now = timezone.now()
    for i in range(3):
        request = submit(destinations=[{"host": f"h{i}-{j}.example", "port": 443} for j in range(3)])
        approve_request(actor=approver, request=request, now=now)
    assert expire_due_grants(now=now + timedelta(days=30), batch_size=2) == 9
    assert set(ExceptionRequest.objects.values_list("status", flat=True)) == {"expired"}


def test_revoke_needs_a_reason_and_records_who(
    submit: Any, approver: Any, security_officer: Any, outsider: Any
) -> None:
    [grant] = approve_request(actor=approver, request=submit())
    with pytest.raises(ValidationError):
        revoke_grant(actor=security_officer, grant=grant, reason="")
    with pytest.raises(PermissionDenied):
        revoke_grant(actor=outsider, grant=grant, reason="not mine")
    revoke_grant(actor=security_officer, grant=grant, reason="Vendor breached.")
    grant.refresh_from_db()
    assert (grant.status, grant.revoked_by, grant.revoke_reason) == ("revoked", security_officer, "Vendor breached.")
    assert grant.request.status == "revoked"
    [event] = events("grant.revoked")
    assert (event.before["status"], event.after["status"], event.reason) == ("active", "revoked", "Vendor breached.")
    with pytest.raises(TransitionError):
        revoke_grant(actor=security_officer, grant=grant, reason="again")
    assert expire_due_grants(now=timezone.now() + timedelta(days=30)) == 0


def test_grant_is_active_only_inside_its_window(submit: Any, approver: Any) -> None:
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(), now=now)
    assert grant.is_active(at=now)
    assert not grant.is_active(at=now - timedelta(seconds=1))
    assert not grant.is_active(at=grant.expires_at)
