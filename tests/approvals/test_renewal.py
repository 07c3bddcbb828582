"""Renewal and expiry: do not renew, renewals take over without gap or overlap, shortening a live grant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.services import approve_request
from audit.models import AuditEvent
from exceptions.actions import grant_actions
from exceptions.models import ExceptionRequest, Grant
from exceptions.reminders import send_expiry_reminders
from exceptions.services.grants import mark_do_not_renew, shorten_grant
from foundation.outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db


def test_do_not_renew_stops_reminders_and_the_renewal_offer(
    submit: Any, approver: Any, requester: Any, client: Client
) -> None:
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=10)), now=now)
    mark_do_not_renew(actor=requester, grant=grant, reason="Vendor contract ends.")
    assert AuditEvent.objects.get(action="grant.do_not_renew").reason == "Vendor contract ends."
    assert send_expiry_reminders(now=now + timedelta(days=4)) == 0
    grant.refresh_from_db()
    assert not grant_actions(requester, grant).allows("renew")
    client.force_login(requester)
    page = client.get(f"/grants/{grant.pk}/").content.decode()
    assert "Renew this grant" not in page and 'Marked "do not renew"' in page


def test_a_renewal_approved_before_expiry_takes_over_without_gap_or_overlap(submit: Any, approver: Any) -> None:
    now = timezone.now()
    [old] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=7)), now=now - timedelta(days=6))
    renewal = submit(renews=old, lifetime=timedelta(days=7))
    [new] = approve_request(actor=approver, request=renewal, now=now)
    old.refresh_from_db()
    assert old.expires_at == new.valid_from == now
    # Taking over now revokes the old grant with reason kind "superseded"; its request ran its course.
    assert (old.status, old.revoke_kind, new.status) == ("revoked", "superseded", "active")
    assert ExceptionRequest.objects.get(pk=old.request_id).status == "expired"
    open_grants = Grant.objects.filter(status__in=["scheduled", "active"], host=new.host)
    assert list(open_grants) == [new]
    event = AuditEvent.objects.get(action="grant.superseded")
    assert event.reason == f"renewed by request #{renewal.pk}"
    assert (event.before["status"], event.after["status"]) == ("active", "revoked")


def test_an_approver_shortens_a_live_grant_and_it_is_published(
    submit: Any, approver: Any, requester: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=7)), now=now)
    with pytest.raises(PermissionDenied, match="Only approvers of team Payments"):
        shorten_grant(actor=requester, grant=grant, expires_at=now + timedelta(days=1), reason="x")
    with pytest.raises(ValidationError, match="file a renewal to extend"):
        shorten_grant(actor=approver, grant=grant, expires_at=now + timedelta(days=9), reason="x", now=now)
    with pytest.raises(ValidationError, match="revoke it instead"):
        shorten_grant(actor=approver, grant=grant, expires_at=now - timedelta(hours=1), reason="x", now=now)
    OutboxMessage.objects.filter(kind="bundle.publish").delete()  # the approval's own publish
    shorten_grant(actor=approver, grant=grant, expires_at=now + timedelta(days=2), reason="Project ends.", now=now)
    grant.refresh_from_db()
    assert grant.expires_at == now + timedelta(days=2)
    event = AuditEvent.objects.get(action="grant.shortened")
    assert event.reason == "Project ends." and event.actor_label == "bob"
    publish = OutboxMessage.objects.get(kind="bundle.publish")
    assert publish.payload == {"trigger": f"grant {grant.pk} shortened"}, "a bundle publish is queued for it"


def test_api_grant_actions_do_not_renew_and_shorten(submit: Any, approver: Any, requester: Any) -> None:
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=7)), now=now)
    api = APIClient()
    api.force_authenticate(requester)
    body = api.get(f"/api/v1/grants/{grant.pk}/").json()
    assert set(body["allowed_actions"]) == {"revoke", "renew", "do_not_renew"}
    assert (
        api.post(f"/api/v1/grants/{grant.pk}/shorten/", {"expires_at": now.isoformat(), "reason": "x"}).status_code
        == 403
    )
    body = api.post(f"/api/v1/grants/{grant.pk}/do-not-renew/", {}, format="json").json()
    assert body["do_not_renew"] is True and "renew" not in body["allowed_actions"]
    api.force_authenticate(approver)
    response = api.post(
        f"/api/v1/grants/{grant.pk}/shorten/",
        {"expires_at": (now + timedelta(days=1)).isoformat(), "reason": "Done sooner."},
        format="json",
    )
    assert response.status_code == 200, response.json()
