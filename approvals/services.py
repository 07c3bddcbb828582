"""Decisions on exception requests, and the approval jobs.

``approve_request``, ``reject_request`` and ``request_changes`` are names for
``approvals.gate.decide``, the one function every decision passes through (it
checks state, eligibility and MFA at the decision, then writes). The jobs
below expire silent requests, remind missing approvers and move go-lives out
of freezes. ``go_live_at``/``go_live_for`` live in ``approvals.golive``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from approvals import gate, notifications
from approvals.access import approval_state
from approvals.golive import go_live_at, go_live_for
from approvals.models import Decision
from approvals.policy import RequestFacts, current_policy
from approvals.windows import frozen_environments, load_calendar
from audit.services import SYSTEM, record_event
from exceptions.choices import GrantStatus, RequestStatus
from exceptions.models import ExceptionRequest, Grant, Workload
from exceptions.services import lifecycle
from exceptions.services.batches import activate_due_grants
from exceptions.services.requests import move_request
from exceptions.validators import is_wildcard
from foundation.outbox.models import OutboxMessage


def form_preview(
    *, workload: Workload, hosts: Sequence[str], purpose: str, data_class: str, risk_tier: str, now: datetime
) -> dict[str, object]:
    """For the request form: the rule that would apply, who must approve, when it would go live."""
    rule = current_policy().rule_for(
        RequestFacts(
            environment=workload.environment,
            data_class=data_class,
            risk_tier=risk_tier,
            purpose=purpose,
            team=workload.team.slug,
            wildcard=any(is_wildcard(h) for h in hosts),
        )
    )
    go_live = go_live_at(
        rule=rule, environment=workload.environment, desired_start=None, now=now, calendar=load_calendar(now)
    )
    return {
        "rule": rule.name,
        "needs": " and ".join(r.describe() for r in rule.requires) + (", MFA at the decision" if rule.mfa else ""),
        "go_live": go_live.as_dict(),
    }


def approve_request(
    *,
    actor: Any,
    request: ExceptionRequest,
    reason: str = "",
    lifetime: timedelta | None = None,
    keep_destination_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[Grant]:
    """Count ``actor``'s approval through the decision gate; the grants issued when the quorum completes.

    The approver may narrow the request first (a shorter ``lifetime``, only the
    destinations in ``keep_destination_ids``). Returns an empty list while
    approvals are still missing.
    """
    outcome = gate.decide(
        actor=actor,
        request=request,
        action=gate.APPROVE,
        reason=reason,
        lifetime=lifetime,
        keep_destination_ids=keep_destination_ids,
        now=now,
    )
    return outcome.grants


def reject_request(
    *, actor: Any, request: ExceptionRequest, reason: str, now: datetime | None = None
) -> ExceptionRequest:
    """Reject ``request`` through the decision gate (a reason is required)."""
    return gate.decide(actor=actor, request=request, action=gate.REJECT, reason=reason, now=now).request


def request_changes(
    *, actor: Any, request: ExceptionRequest, comment: str, now: datetime | None = None
) -> ExceptionRequest:
    """Send the request back to its requester through the decision gate; approvals so far will not count."""
    return gate.decide(actor=actor, request=request, action=gate.REQUEST_CHANGES, reason=comment, now=now).request


# --- Jobs -----------------------------------------------------------------------


def expire_stale_requests(*, now: datetime | None = None) -> int:
    """Pending requests with no decision for EGRESS_PENDING_EXPIRY_DAYS expire; each requester is told."""
    now = now or timezone.now()
    days = settings.EGRESS_PENDING_EXPIRY_DAYS
    cutoff = now - timedelta(days=days)
    recent = Decision.objects.filter(request=OuterRef("pk"), created_at__gt=cutoff)
    stale_ids = list(
        ExceptionRequest.objects.filter(status=RequestStatus.PENDING, updated_at__lte=cutoff)
        .exclude(Exists(recent))
        .order_by("id")
        .values_list("id", flat=True)
    )
    expired = 0
    for request_id in stale_ids:
        with transaction.atomic():
            locked = (
                ExceptionRequest.objects.select_for_update(skip_locked=True)
                .select_related("workload__team", "requester")
                .filter(pk=request_id, status=RequestStatus.PENDING, updated_at__lte=cutoff)
                .first()
            )
            if locked is None or Decision.objects.filter(request=locked, created_at__gt=cutoff).exists():
                continue
            move_request(locked, RequestStatus.EXPIRED, now=now)
            record_event(
                actor=SYSTEM,
                action="request.expired",
                obj=locked,
                before={"status": RequestStatus.PENDING},
                after={"status": RequestStatus.EXPIRED},
                reason=f"No decision for {days} days.",
            )
            notifications.tell_requester(locked, what="expired", key=f"r{locked.revision}", days=days)
            expired += 1
    return expired


def remind_missing_approvals(*, now: datetime | None = None, limit: int = 500) -> int:
    """Ask again, once a day, the people who can supply an approval still missing after a day of silence."""
    now = now or timezone.now()
    quiet = now - timedelta(hours=settings.EGRESS_APPROVAL_REMINDER_HOURS)
    recent = Decision.objects.filter(request=OuterRef("pk"), created_at__gt=quiet)
    waiting = (
        ExceptionRequest.objects.filter(status=RequestStatus.PENDING, updated_at__lte=quiet)
        .exclude(Exists(recent))
        .select_related("workload__team", "requester")
        .prefetch_related("destinations", "decisions__actor")
        .order_by("updated_at", "id")[:limit]
    )
    policy = current_policy()
    sent = 0
    event = f"reminder-{now:%Y-%m-%d}"
    for request in waiting:
        already = OutboxMessage.objects.filter(
            idempotency_key__startswith=f"approval-needed:{request.pk}:r{request.revision}:",
            idempotency_key__endswith=f":{event}",
        )
        if already.exists():
            continue
        with transaction.atomic():
            state = approval_state(request, policy=policy)
            sent += notifications.ask_for_missing_approvals(request, state=state, event=event)
    return sent


def reschedule_frozen_requests(*, now: datetime | None = None) -> int:
    """Approved requests due to go live inside a freeze move to the next allowed start.

    The lifetime moves with the start, so a freeze never eats into it.
    """
    now = now or timezone.now()
    frozen = frozen_environments(now)
    if not frozen:
        return 0
    policy = current_policy()
    calendar = load_calendar(now)
    due_ids = list(
        ExceptionRequest.objects.filter(
            status=RequestStatus.APPROVED,
            workload__environment__in=sorted(frozen),
            grants__status=GrantStatus.SCHEDULED,
            grants__valid_from__lte=now,
        )
        .distinct()
        .values_list("id", flat=True)
    )
    moved = 0
    for request_id in due_ids:
        with transaction.atomic():
            locked = (
                ExceptionRequest.objects.select_for_update(skip_locked=True)
                .select_related("workload__team", "requester")
                .filter(pk=request_id, status=RequestStatus.APPROVED)
                .first()
            )
            if locked is None:
                continue
            state = approval_state(locked, policy=policy)
            go_live = go_live_for(locked, now=now, state=state, calendar=calendar)
            if go_live.at is None:
                continue
            valid_from, expires_at = locked.grant_window(now, not_before=go_live.at)
            before = sorted(
                set(
                    Grant.objects.filter(request=locked, status=GrantStatus.SCHEDULED).values_list(
                        "valid_from", flat=True
                    )
                )
            )
            lifecycle.reschedule(
                actor=SYSTEM, request=locked, valid_from=valid_from, expires_at=expires_at, reason=go_live.reason
            )
            record_event(
                actor=SYSTEM,
                action="request.rescheduled",
                obj=locked,
                before={"go_live": before[0] if before else None},
                after={"go_live": valid_from, "expires_at": expires_at},
                reason=go_live.reason,
            )
            notifications.tell_requester(
                locked,
                what="rescheduled",
                key=f"{valid_from.isoformat()}",
                go_live=valid_from,
                go_live_reason=go_live.reason,
            )
            moved += 1
    return moved


def activate_due_requests(*, now: datetime | None = None) -> int:
    """The beat job: move frozen go-lives past their freeze, then activate what is due."""
    now = now or timezone.now()
    reschedule_frozen_requests(now=now)
    return activate_due_grants(now=now)
