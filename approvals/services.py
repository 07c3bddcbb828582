"""Decisions on exception requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from egress_portal.logging import log_request_decision
from exceptions.access import decide_denial
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.grants import issue_grants
from exceptions.services.requests import lock_request, move_request


def _lock_for_decision(actor: Any, request: ExceptionRequest) -> ExceptionRequest:
    locked = lock_request(request)
    denial = decide_denial(actor, locked)
    if denial:
        raise PermissionDenied(denial)
    return locked


def approve_request(
    *, actor: Any, request: ExceptionRequest, reason: str = "", now: datetime | None = None
) -> list[Grant]:
    """Approve a pending request and issue one grant per destination.

    The request row is locked and moved only if still pending, so two approvers
    acting at once produce exactly one set of grants.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock_for_decision(actor, request)
        before = locked.status
        starts_now = locked.grant_window(now)[0] <= now
        target = RequestStatus.ACTIVE if starts_now else RequestStatus.APPROVED
        move_request(locked, target, now=now, decided_by=actor, decided_at=now, decision_reason=reason.strip())
        record_event(
            actor=actor,
            action="request.approved",
            obj=locked,
            before={"status": before},
            after={"status": locked.status, "decided_by": actor.get_username()},
            reason=reason.strip(),
        )
        grants = issue_grants(actor=actor, request=locked, now=now)
    log_request_decision("approve", actor=actor, request=locked, reason=reason.strip())
    return grants


def reject_request(
    *, actor: Any, request: ExceptionRequest, reason: str, now: datetime | None = None
) -> ExceptionRequest:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(
            {"reason": ["Say why the request is rejected, so the requester can fix it or look elsewhere."]}
        )
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock_for_decision(actor, request)
        before = locked.status
        move_request(locked, RequestStatus.REJECTED, now=now, decided_by=actor, decided_at=now, decision_reason=reason)
        record_event(
            actor=actor,
            action="request.rejected",
            obj=locked,
            before={"status": before},
            after={"status": locked.status, "decided_by": actor.get_username()},
            reason=reason,
        )
    log_request_decision("reject", actor=actor, request=locked, reason=reason)
    return locked
