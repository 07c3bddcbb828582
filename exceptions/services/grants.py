"""The grant lifecycle a person drives: issue the grants of an approved request, revoke one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, PendingEvent, record_event, record_events
from exceptions.access import revoke_denial
from exceptions.choices import GrantStatus, RequestStatus
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.publications import publish_on_commit
from exceptions.services.requests import close_finished_requests
from exceptions.state import TransitionError, check_grant_transition

GRANT_TYPE = "exceptions.grant"


def issue_grants(*, actor: Actor, request: ExceptionRequest, now: datetime) -> list[Grant]:
    """Create the grants of an approved request; the caller holds its transaction."""
    valid_from, expires_at = request.grant_window(now)
    status = GrantStatus.ACTIVE if valid_from <= now else GrantStatus.SCHEDULED
    grants = [
        Grant(
            request=request,
            workload=request.workload,
            identity=request.workload.identity,
            host=dest.host,
            port=dest.port,
            protocol=dest.protocol,
            tls_required=dest.tls_required,
            valid_from=valid_from,
            expires_at=expires_at,
            status=status,
        )
        for dest in request.destinations.all()
    ]
    created = Grant.objects.bulk_create(grants)
    if any(g.pk is None for g in created):  # backends without RETURNING
        created = list(Grant.objects.filter(request=request).order_by("id"))
    record_events(
        [
            PendingEvent(
                actor=actor, action="grant.issued", object_type=GRANT_TYPE, object_id=str(g.pk), after=g.snapshot()
            )
            for g in created
        ]
    )
    publish_on_commit(f"request {request.pk} approved")
    return created


def revoke_grant(*, actor: Any, grant: Grant, reason: str, now: datetime | None = None) -> Grant:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the grant is revoked; the owning team will read it."]})
    now = now or timezone.now()
    with transaction.atomic():
        locked = Grant.objects.select_for_update().select_related("workload__team").get(pk=grant.pk)
        denial = revoke_denial(actor, locked)
        if denial:
            raise PermissionDenied(denial)
        check_grant_transition(locked.status, GrantStatus.REVOKED)
        before = locked.snapshot()
        updated = Grant.objects.filter(pk=locked.pk, status=locked.status).update(
            status=GrantStatus.REVOKED, revoked_by=actor, revoked_at=now, revoke_reason=reason
        )
        if updated != 1:
            raise TransitionError(f"Grant #{locked.pk} changed while you were revoking it; reload and try again.")
        locked.status, locked.revoked_by, locked.revoked_at, locked.revoke_reason = (
            GrantStatus.REVOKED,
            actor,
            now,
            reason,
        )
        record_event(
            actor=actor, action="grant.revoked", obj=locked, before=before, after=locked.snapshot(), reason=reason
        )
        close_finished_requests([locked.request_id], target=RequestStatus.REVOKED, actor=actor, now=now, reason=reason)
        publish_on_commit(f"grant {locked.pk} revoked")
    return locked
