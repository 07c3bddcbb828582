"""The grant changes a person drives: issue the grants of an approved request, revoke, shorten, offboard.

These check who may act and what the input means, then ask ``lifecycle``, the
one writer of a grant's status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, SystemActor, record_event
from exceptions.access import revoke_denial, roles_for
from exceptions.actions import grant_actions
from exceptions.choices import GrantStatus, RevokeKind
from exceptions.models import ExceptionRequest, Grant, Workload
from exceptions.services import lifecycle
from exceptions.services.lifecycle import GRANT_TYPE
from exceptions.state import OPEN_GRANT_STATUSES, check_grant_transition
from foundation.actors import user_of

__all__ = [
    "GRANT_TYPE",
    "issue_grants",
    "mark_do_not_renew",
    "offboard_workload",
    "revoke_grant",
    "shorten_grant",
    "supersede_renewed_grant",
]


def issue_grants(
    *, actor: Actor, request: ExceptionRequest, now: datetime, not_before: datetime | None = None
) -> list[Grant]:
    """Create the grants of an approved request; the caller holds its transaction.

    ``not_before`` is the go-live time of a change window (see ``grant_window``).
    """
    valid_from, expires_at = request.grant_window(now, not_before=not_before)
    return lifecycle.issue(
        actor=actor,
        request=request,
        destinations=list(request.destinations.all()),
        valid_from=valid_from,
        expires_at=expires_at,
        now=now,
        trigger=f"request {request.pk} approved",
    )


def revoke_grant(*, actor: Any, grant: Grant, reason: str, now: datetime | None = None) -> Grant:
    """A person revokes one grant from its page or the API (kind ``manual``)."""
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
        [revoked] = lifecycle.revoke(
            actor=actor,
            grants=[locked.pk],
            kind=RevokeKind.MANUAL,
            reason=reason,
            now=now,
            revoked_by=user_of(actor),
            trigger=f"grant {locked.pk} revoked",
            strict=True,
        )
    return revoked


def offboard_workload(*, actor: Actor, workload: Workload, reason: str, now: datetime | None = None) -> list[Grant]:
    """A workload leaves (decommissioned, its partner offboarded): every open grant of it is revoked.

    Security officers, administrators and system jobs (an inventory sync) may; kind ``offboarded``.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the workload is offboarded; the owning team will read it."]})
    if not isinstance(actor, SystemActor):
        roles = roles_for(user_of(actor))
        if not (roles.is_security or roles.is_admin):
            raise PermissionDenied("Only security officers or administrators offboard a workload.")
    now = now or timezone.now()
    with transaction.atomic():
        return lifecycle.revoke(
            actor=actor,
            grants=Grant.objects.filter(workload=workload, status__in=sorted(OPEN_GRANT_STATUSES)),
            kind=RevokeKind.OFFBOARDED,
            reason=reason,
            now=now,
            revoked_by=None if isinstance(actor, SystemActor) else user_of(actor),
            trigger=f"workload {workload.pk} offboarded",
        )


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
        return lifecycle.shorten(actor=actor, grant=locked, expires_at=expires_at, reason=reason)


def supersede_renewed_grant(
    *, actor: Actor, request: ExceptionRequest, starts_at: datetime, now: datetime
) -> Grant | None:
    """A renewal takes over at ``starts_at``: the grant it renews ends exactly then (no gap, no overlap).

    Taking over now revokes the old grant (kind ``superseded``), so the next bundle
    holds only the renewal. The caller holds the transaction of the renewal's approval.
    """
    return lifecycle.supersede(actor=actor, renewal=request, starts_at=starts_at, now=now)
