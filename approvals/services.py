"""Decisions on exception requests, counted against the approval policy.

Each decision is a ``Decision`` row; the request becomes approved only when
the decisions of its current revision satisfy every requirement of the rule
that matches it. Every function locks the request row first, so two approvers
acting at once are counted one after the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from approvals import notifications
from approvals.access import ApprovalState, approval_slot, approval_state, decide_denial
from approvals.models import Decision, DecisionKind
from approvals.policy import Policy, RequestFacts, Rule, current_policy
from approvals.windows import Calendar, GoLive, frozen_environments, load_calendar
from audit.services import SYSTEM, record_event
from exceptions.choices import GrantStatus, RequestStatus
from exceptions.events import emit_request
from exceptions.models import ExceptionRequest, Grant, Workload
from exceptions.services.batches import activate_due_grants
from exceptions.services.grants import issue_grants, supersede_renewed_grant
from exceptions.services.publishes import queue_publish
from exceptions.services.requests import lock_request, move_request, narrow_request
from exceptions.state import TransitionError
from exceptions.validators import is_wildcard
from foundation.actors import user_of
from foundation.logging import log_request_decision
from foundation.outbox.models import OutboxMessage


def go_live_at(
    *, rule: Rule, environment: str, desired_start: datetime | None, now: datetime, calendar: Calendar
) -> GoLive:
    """When a request under ``rule`` would go live if its approvals were complete at ``now``, and why.

    The rule decides whether a change window applies; a freeze on the
    environment pushes the start past its end either way.
    """
    earliest = max(now, desired_start or now)
    if rule.change_window:
        result = calendar.next_window(environment, earliest)
        return GoLive(
            at=result.at, reason=f"rule {rule.name} waits for a change window: {result.reason}", window=result.window
        )
    unfrozen = calendar.unfrozen(environment, earliest)
    if unfrozen.at == now:
        return GoLive(at=now, reason="on approval")
    return unfrozen


def go_live_for(
    request: ExceptionRequest, *, now: datetime, state: ApprovalState, calendar: Calendar | None = None
) -> GoLive:
    return go_live_at(
        rule=state.rule,
        environment=request.workload.environment,
        desired_start=request.desired_start,
        now=now,
        calendar=calendar or load_calendar(now),
    )


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
        "needs": " and ".join(r.describe() for r in rule.requires) + (", MFA enrolled" if rule.mfa else ""),
        "go_live": go_live.as_dict(),
    }


def _lock_pending(request: ExceptionRequest) -> ExceptionRequest:
    locked = lock_request(request)
    if locked.status != RequestStatus.PENDING:
        raise TransitionError(f"Request #{locked.pk} is {locked.status} now; only pending requests are decided.")
    return locked


def _decision(
    *,
    locked: ExceptionRequest,
    actor: Any,
    kind: str,
    counts_for: str,
    reason: str,
    policy: Policy,
    state: ApprovalState,
    now: datetime,
) -> Decision:
    return Decision.objects.create(
        request=locked,
        actor=user_of(actor),
        kind=kind,
        counts_for=counts_for,
        reason=reason,
        rule=state.rule.name,
        policy_revision=policy.revision,
        request_revision=locked.revision,
        created_at=now,
    )


def approve_request(
    *,
    actor: Any,
    request: ExceptionRequest,
    reason: str = "",
    lifetime: timedelta | None = None,
    keep_destination_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[Grant]:
    """Count ``actor``'s approval; when the rule's quorum is complete, issue the grants.

    The approver may narrow the request first (a shorter ``lifetime``, only the
    destinations in ``keep_destination_ids``). Returns the grants issued, or an
    empty list while approvals are still missing.
    """
    reason = (reason or "").strip()
    now = now or timezone.now()
    policy = current_policy()
    with transaction.atomic():
        locked = _lock_pending(request)
        if lifetime is not None or keep_destination_ids is not None:
            narrow_request(
                actor=actor,
                request=locked,
                lifetime=lifetime,
                keep_destination_ids=keep_destination_ids,
                reason=reason,
                now=now,
            )
        state = approval_state(locked, policy=policy)
        requirement, denial = approval_slot(user_of(actor), locked, state)
        if requirement is None:
            raise PermissionDenied(denial)
        cap = state.rule.max_lifetime
        if cap is not None and locked.lifetime > cap:
            raise ValidationError(
                {
                    "lifetime": [
                        f"Rule {state.rule.name} allows at most {cap.days} days; shorten the lifetime when approving "
                        "or request changes."
                    ]
                }
            )
        _decision(
            locked=locked,
            actor=actor,
            kind=DecisionKind.APPROVE,
            counts_for=requirement.group,
            reason=reason,
            policy=policy,
            state=state,
            now=now,
        )
        state = approval_state(locked, policy=policy)
        if not state.complete:
            record_event(
                actor=actor,
                action="request.approval_added",
                obj=locked,
                after={
                    "counts_for": requirement.group,
                    "rule": state.rule.name,
                    "policy_revision": policy.revision,
                    "missing": [g.requirement.group for g in state.missing],
                },
                reason=reason,
            )
            notifications.tell_requester(
                locked,
                what="approval_added",
                key=f"r{locked.revision}:{user_of(actor).pk}",
                approver=user_of(actor).get_username(),
                state=state,
            )
            notifications.ask_for_missing_approvals(locked, state=state, event=f"after-{user_of(actor).pk}")
            return []
        go_live = go_live_for(locked, now=now, state=state)
        if go_live.at is None:
            raise ValidationError(
                {"go_live": [f"This approval completes the request, but it cannot go live: {go_live.reason}."]}
            )
        valid_from, _ = locked.grant_window(now, not_before=go_live.at)
        target = RequestStatus.ACTIVE if valid_from <= now else RequestStatus.APPROVED
        before = locked.status
        move_request(locked, target, now=now, decided_by=user_of(actor), decided_at=now, decision_reason=reason)
        record_event(
            actor=actor,
            action="request.approved",
            obj=locked,
            before={"status": before},
            after={
                "status": locked.status,
                "decided_by": user_of(actor).get_username(),
                "approved_by": state.approvers,
                "rule": state.rule.name,
                "policy_revision": policy.revision,
                "go_live": valid_from,
                "go_live_reason": go_live.reason,
            },
            reason=reason,
        )
        grants = issue_grants(actor=actor, request=locked, now=now, not_before=go_live.at)
        supersede_renewed_grant(actor=actor, request=locked, starts_at=valid_from, now=now)
        emit_request("request.approved", locked, revision=True)
        notifications.tell_requester(
            locked,
            what="approved" if target == RequestStatus.ACTIVE else "scheduled",
            key=f"r{locked.revision}",
            state=state,
            go_live=valid_from,
            go_live_reason=go_live.reason,
        )
    log_request_decision("approve", actor=actor, request=locked, reason=reason, rule=state.rule.name)
    return grants


def _decide_against(
    *, actor: Any, request: ExceptionRequest, reason: str, kind: str, target: str, action: str, now: datetime
) -> ExceptionRequest:
    policy = current_policy()
    with transaction.atomic():
        locked = _lock_pending(request)
        state = approval_state(locked, policy=policy)
        denial = decide_denial(user_of(actor), locked, state)
        if denial:
            raise PermissionDenied(denial)
        _decision(
            locked=locked, actor=actor, kind=kind, counts_for="", reason=reason, policy=policy, state=state, now=now
        )
        before = locked.status
        move_request(locked, target, now=now, decided_by=user_of(actor), decided_at=now, decision_reason=reason)
        record_event(
            actor=actor,
            action=action,
            obj=locked,
            before={"status": before},
            after={
                "status": locked.status,
                "decided_by": user_of(actor).get_username(),
                "rule": state.rule.name,
                "policy_revision": policy.revision,
            },
            reason=reason,
        )
        notifications.tell_requester(
            locked, what=target, key=f"r{locked.revision}", decided_by=user_of(actor).get_username(), reason=reason
        )
        emit_request(action, locked, revision=True)
    log_request_decision(kind, actor=actor, request=locked, reason=reason, rule=state.rule.name)
    return locked


def reject_request(
    *, actor: Any, request: ExceptionRequest, reason: str, now: datetime | None = None
) -> ExceptionRequest:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(
            {"reason": ["Say why the request is rejected, so the requester can fix it or look elsewhere."]}
        )
    return _decide_against(
        actor=actor,
        request=request,
        reason=reason,
        kind=DecisionKind.REJECT,
        target=RequestStatus.REJECTED,
        action="request.rejected",
        now=now or timezone.now(),
    )


def request_changes(
    *, actor: Any, request: ExceptionRequest, comment: str, now: datetime | None = None
) -> ExceptionRequest:
    """Send the request back to its requester with what to change; approvals given so far will not count."""
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError({"reason": ["Say what should change, so the requester can edit and resubmit."]})
    return _decide_against(
        actor=actor,
        request=request,
        reason=comment,
        kind=DecisionKind.REQUEST_CHANGES,
        target=RequestStatus.CHANGES_REQUESTED,
        action="request.changes_requested",
        now=now or timezone.now(),
    )


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
            grants = Grant.objects.filter(request=locked, status=GrantStatus.SCHEDULED)
            before = sorted({g.valid_from for g in grants})
            grants.update(valid_from=valid_from, expires_at=expires_at)
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
            queue_publish(trigger=f"request {locked.pk} rescheduled")
            moved += 1
    return moved


def activate_due_requests(*, now: datetime | None = None) -> int:
    """The beat job: move frozen go-lives past their freeze, then activate what is due."""
    now = now or timezone.now()
    reschedule_frozen_requests(now=now)
    return activate_due_grants(now=now)
