"""The grant lifecycle a person drives: issue the grants of an approved request, revoke one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, PendingEvent, record_event, record_events
from exceptions.access import revoke_denial
from exceptions.actions import grant_actions
from exceptions.bundle.provider_ranges import service_of
from exceptions.choices import GrantStatus, RequestStatus
from exceptions.events import emit_grants
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.publishes import queue_publish
from exceptions.services.requests import close_finished_requests
from exceptions.state import TransitionError, check_grant_transition
from foundation.actors import user_of

GRANT_TYPE = "exceptions.grant"


def issue_grants(
    *, actor: Actor, request: ExceptionRequest, now: datetime, not_before: datetime | None = None
) -> list[Grant]:
    """Create the grants of an approved request; the caller holds its transaction.

    ``not_before`` is the go-live time of a change window (see ``grant_window``).
    """
    valid_from, expires_at = request.grant_window(now, not_before=not_before)
    status = GrantStatus.ACTIVE if valid_from <= now else GrantStatus.SCHEDULED
    grants = [
        Grant(
            request=request,
            workload=request.workload,
            identity=request.workload.identity,
            host=dest.host,
            service=service_of(dest.host),
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
    queue_publish(trigger=f"request {request.pk} approved")
    emit_grants("grant.activated", [g for g in created if g.status == GrantStatus.ACTIVE])
    return created


def revoke_grant(*, actor: Any, grant: Grant, reason: str, now: datetime | None = None) -> Grant:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the grant is revoked; the owning team will read it."]})
    now = now or timezone.now()
    with transaction.atomic():
        locked = Grant.objects.select_for_update().select_related("workload__team").get(pk=grant.pk)
        denial = revoke_denial(user_of(actor), locked)
        if denial:
            raise PermissionDenied(denial)
        check_grant_transition(locked.status, GrantStatus.REVOKED)
        before = locked.snapshot()
        updated = Grant.objects.filter(pk=locked.pk, status=locked.status).update(
            status=GrantStatus.REVOKED, revoked_by=user_of(actor), revoked_at=now, revoke_reason=reason
        )
        if updated != 1:
            raise TransitionError(f"Grant #{locked.pk} changed while you were revoking it; reload and try again.")
        locked.status, locked.revoked_by, locked.revoked_at, locked.revoke_reason = (
            GrantStatus.REVOKED,
            user_of(actor),
            now,
            reason,
        )
        record_event(
            actor=actor, action="grant.revoked", obj=locked, before=before, after=locked.snapshot(), reason=reason
        )
        close_finished_requests([locked.request_id], target=RequestStatus.REVOKED, actor=actor, now=now, reason=reason)
        queue_publish(trigger=f"grant {locked.pk} revoked")
        emit_grants("grant.revoked", [locked])
    return locked


def _lock_grant(grant: Grant) -> Grant:
    return Grant.objects.select_for_update().select_related("workload__team", "request").get(pk=grant.pk)


def _grant_denial(actor: Any, grant: Grant, action: str) -> None:
    actions = grant_actions(user_of(actor), grant)
    if not actions.allows(action):
        raise PermissionDenied(actions.why_not(action))


def mark_do_not_renew(*, actor: Any, grant: Grant, reason: str = "") -> Grant:
    """The team lets the grant lapse: no expiry reminders, no renewal offered."""
    with transaction.atomic():
        locked = _lock_grant(grant)
        _grant_denial(actor, locked, "do_not_renew")
        Grant.objects.filter(pk=locked.pk).update(do_not_renew=True)
        locked.do_not_renew = True
        record_event(
            actor=actor,
            action="grant.do_not_renew",
            obj=locked,
            before={"do_not_renew": False},
            after={"do_not_renew": True},
            reason=(reason or "").strip(),
        )
    return locked


def shorten_grant(*, actor: Any, grant: Grant, expires_at: datetime, reason: str, now: datetime | None = None) -> Grant:
    """An approver brings a live or scheduled grant's expiry forward; never later, never into the past."""
    reason = (reason or "").strip()
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if not reason:
        errors["reason"] = ["Say why the grant is shortened; the owning team will read it."]
    with transaction.atomic():
        locked = _lock_grant(grant)
        _grant_denial(actor, locked, "shorten")
        if expires_at >= locked.expires_at:
            errors["expires_at"] = [
                f"Shortening moves the expiry earlier than {locked.expires_at:%Y-%m-%d %H:%M} UTC; "
                "file a renewal to extend."
            ]
        elif expires_at <= max(now, locked.valid_from):
            errors["expires_at"] = ["The new expiry must be after now and after the grant starts; revoke it instead."]
        if errors:
            raise ValidationError(errors)
        before = locked.snapshot()
        updated = Grant.objects.filter(pk=locked.pk, status=locked.status).update(expires_at=expires_at)
        if updated != 1:
            raise TransitionError(f"Grant #{locked.pk} changed while you were shortening it; reload and try again.")
        locked.expires_at = expires_at
        record_event(
            actor=actor, action="grant.shortened", obj=locked, before=before, after=locked.snapshot(), reason=reason
        )
        queue_publish(trigger=f"grant {locked.pk} shortened")
    return locked


def supersede_renewed_grant(
    *, actor: Actor, request: ExceptionRequest, starts_at: datetime, now: datetime
) -> Grant | None:
    """A renewal takes over at ``starts_at``: the grant it renews ends exactly then (no gap, no overlap).

    Taking over now closes the old grant at once, so the next bundle holds only
    the renewal. The caller holds the transaction of the renewal's approval.
    """
    if request.renews_id is None:
        return None
    old = Grant.objects.select_for_update().filter(pk=request.renews_id).first()
    if old is None or old.status not in (GrantStatus.SCHEDULED, GrantStatus.ACTIVE) or old.expires_at <= starts_at:
        return None
    if starts_at <= old.valid_from:
        return None
    before = old.snapshot()
    old.expires_at = starts_at
    if starts_at <= now:
        check_grant_transition(old.status, GrantStatus.EXPIRED)
        old.status = GrantStatus.EXPIRED
    Grant.objects.filter(pk=old.pk).update(expires_at=old.expires_at, status=old.status)
    record_event(
        actor=actor,
        action="grant.superseded",
        obj=old,
        before=before,
        after=old.snapshot(),
        reason=f"renewed by request #{request.pk}",
    )
    if old.status == GrantStatus.EXPIRED:
        close_finished_requests([old.request_id], target=RequestStatus.EXPIRED, actor=actor, now=now)
    return old
