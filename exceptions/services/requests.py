"""The request lifecycle: file, submit a draft, cancel; the locking helpers other apps call.

``lock_request``, ``move_request``, ``move_requests`` and ``close_finished_requests``
are a deliberate public API: approvals and the grant jobs move requests through them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.services import Actor, PendingEvent, record_event, record_events
from exceptions import hooks
from exceptions.access import cancel_denial, roles_for
from exceptions.choices import DataClass, Purpose, RequestStatus
from exceptions.events import emit_request
from exceptions.models import ExceptionRequest, Grant, RequestDestination, Workload
from exceptions.risk import RiskAssessment
from exceptions.services.submissions import (
    UNKNOWN_WORKLOAD,
    DestinationInput,
    assess_request_risk,
    check_choice,
    check_text_limits,
    collect_destination_errors,
    lifetime_error,
)
from exceptions.state import OPEN_GRANT_STATUSES, TransitionError, check_request_transition
from exceptions.validators import narrowing_errors
from foundation.actors import Actor as RequestActor
from foundation.actors import user_of

REQUEST_TYPE = "exceptions.exceptionrequest"
ON_BEHALF_OF = "requests:on-behalf-of"
DESIRED_START_SLACK = timedelta(minutes=5)
MAX_DESIRED_START_AHEAD = timedelta(days=90)


def _check_submission(
    *,
    actor: Any,
    workload: Workload,
    requester: Any = None,
    destinations: Sequence[Mapping[str, Any] | DestinationInput],
    purpose: str,
    data_class: str,
    justification: str,
    ticket_ref: str,
    lifetime: timedelta,
    desired_start: datetime | None,
    renews: Grant | None,
    now: datetime,
) -> tuple[str, list[DestinationInput], RiskAssessment]:
    """Every check a filed or resubmitted request passes; ValidationError names each bad field."""
    errors: dict[str, list[str]] = {}
    if requester is not None:
        # Filed on behalf of a person: the person must belong to the team, not the tool filing.
        if workload.team_id not in roles_for(requester).member_team_ids:
            errors["requester"] = [
                f"{requester.get_username()} is not a member of the team that owns this workload; "
                "name a member of the team as the requester."
            ]
    elif workload.team_id not in roles_for(user_of(actor)).member_team_ids:
        errors["workload"] = [UNKNOWN_WORKLOAD]
    check_choice(errors, "purpose", purpose, Purpose)
    check_choice(errors, "data_class", data_class, DataClass)
    justification = (justification or "").strip()
    check_text_limits(errors, justification=justification, ticket_ref=(ticket_ref or "").strip())
    minimum = settings.EGRESS_JUSTIFICATION_MIN_LENGTH
    if "justification" not in errors and len(justification) < minimum:
        errors["justification"] = [
            f"Explain why this workload needs the destination in at least {minimum} characters "
            f"({len(justification)} given): what it does there and what breaks without it."
        ]
    cleaned = collect_destination_errors(errors, destinations)
    if lifetime <= timedelta(0):
        errors["lifetime"] = ["The lifetime must be positive, for example 7 days."]
    if desired_start is not None:
        if desired_start < now - DESIRED_START_SLACK:
            errors["desired_start"] = ["The desired start is in the past; leave it empty to start on approval."]
        elif desired_start > now + MAX_DESIRED_START_AHEAD:
            errors["desired_start"] = [f"Start within {MAX_DESIRED_START_AHEAD.days} days; file later for later work."]
    if renews is not None and renews.workload_id != workload.pk:
        errors["renews"] = ["A renewal must be for the same workload as the grant it extends."]
    risk = assess_request_risk(
        environment=workload.environment,
        hosts=[d.host for d in cleaned],
        purpose=purpose,
        data_class=data_class,
        lifetime=lifetime,
    )
    cap_error = lifetime_error(risk, lifetime)
    if "lifetime" not in errors and cap_error:
        errors["lifetime"] = [cap_error]
    if errors:
        raise ValidationError(errors)
    return justification, cleaned, risk


def _ask_approvers(request: ExceptionRequest, *, event: str) -> None:
    hooks.approvals.get().request_submitted(request, event=event)


def submit_request(
    *,
    actor: Any,
    workload: Workload,
    destinations: Sequence[Mapping[str, Any] | DestinationInput],
    purpose: str,
    data_class: str,
    justification: str,
    lifetime: timedelta,
    ticket_ref: str = "",
    desired_start: datetime | None = None,
    renews: Grant | None = None,
    draft: bool = False,
    on_behalf_of: Any = None,
    now: datetime | None = None,
) -> ExceptionRequest:
    """File an exception request (pending, or a draft to finish later).

    ``on_behalf_of``: the person the request is for (an integration filing a ticket
    reporter's request); they become the requester, so separation of duties applies
    to them, and the event's actor stays whoever filed it. Only an integration token
    with the ``requests:on-behalf-of`` scope may do it (a bare user: jobs and fixtures)."""
    now = now or timezone.now()
    if on_behalf_of is not None and isinstance(actor, RequestActor) and ON_BEHALF_OF not in actor.token_scopes:
        raise PermissionDenied(f"Filing for someone else needs an integration token with the '{ON_BEHALF_OF}' scope.")
    justification, cleaned, risk = _check_submission(
        actor=actor,
        workload=workload,
        requester=on_behalf_of,
        destinations=destinations,
        purpose=purpose,
        data_class=data_class,
        justification=justification,
        ticket_ref=ticket_ref,
        lifetime=lifetime,
        desired_start=desired_start,
        renews=renews,
        now=now,
    )
    status = RequestStatus.DRAFT if draft else RequestStatus.PENDING
    with transaction.atomic():
        request = ExceptionRequest.objects.create(
            workload=workload,
            requester=on_behalf_of or user_of(actor),
            filed_by=user_of(actor) if on_behalf_of is not None else None,
            purpose=purpose,
            data_class=data_class,
            justification=justification,
            ticket_ref=(ticket_ref or "").strip(),
            lifetime=lifetime,
            desired_start=desired_start,
            status=status,
            risk_tier=risk.tier,
            risk_reasons=list(risk.reasons),
            renews=renews,
            submitted_at=None if draft else timezone.now(),
        )
        rows = RequestDestination.objects.bulk_create(
            RequestDestination(request=request, **d.__dict__) for d in cleaned
        )
        # A new request has these destinations and no grants or decisions: the approval
        # hook, the webhook payload and the API's 201 body read them from here, not again.
        known_relations(request, destinations=rows, grants=[], decisions=[])
        if not draft:
            _ask_approvers(request, event="submitted")
            emit_request("request.created", request)
        # Last: the audit chain head stays locked from here to the commit, so writers wait on it briefly.
        record_event(
            actor=actor,
            action="request.drafted" if draft else "request.submitted",
            obj=request,
            after={
                **request.snapshot(),
                "destinations": [d.__dict__ for d in cleaned],
                **({"on_behalf_of": on_behalf_of.get_username()} if on_behalf_of is not None else {}),
            },
            reason=justification,
        )
    return request


def known_relations(request: ExceptionRequest, **relations: Sequence[Any]) -> None:
    """Store related rows the caller already holds as ``request``'s prefetched relations (no query reads them)."""
    cache = request.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, rows in relations.items():
        queryset = getattr(request, name).all()
        queryset._result_cache = list(rows)
        queryset._prefetch_done = True
        cache[name] = queryset


def resubmit_request(
    *,
    actor: Any,
    request: ExceptionRequest,
    destinations: Sequence[Mapping[str, Any] | DestinationInput],
    purpose: str,
    data_class: str,
    justification: str,
    lifetime: timedelta,
    ticket_ref: str = "",
    desired_start: datetime | None = None,
    now: datetime | None = None,
) -> ExceptionRequest:
    """The requester's edit after "request changes": a new revision, pending again.

    Approvals given to the earlier revision no longer count (they are kept,
    as decisions of that revision).
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = lock_request(request)
        if locked.requester_id != user_of(actor).pk:
            raise PermissionDenied("Only the requester may edit and resubmit this request.")
        if locked.status != RequestStatus.CHANGES_REQUESTED:
            raise TransitionError(
                f"Request #{locked.pk} is {locked.get_status_display().lower()}; "
                "only a request sent back with changes requested can be edited and resubmitted."
            )
        justification, cleaned, risk = _check_submission(
            actor=actor,
            workload=locked.workload,
            destinations=destinations,
            purpose=purpose,
            data_class=data_class,
            justification=justification,
            ticket_ref=ticket_ref,
            lifetime=lifetime,
            desired_start=desired_start,
            renews=locked.renews,
            now=now,
        )
        before = {**locked.snapshot(), "revision": locked.revision, "destinations": _destinations_of(locked)}
        move_request(
            locked,
            RequestStatus.PENDING,
            now=now,
            purpose=purpose,
            data_class=data_class,
            justification=justification,
            ticket_ref=(ticket_ref or "").strip(),
            lifetime=lifetime,
            desired_start=desired_start,
            risk_tier=risk.tier,
            risk_reasons=list(risk.reasons),
            revision=locked.revision + 1,
            # The request-changes decision stays in the decisions; the request is undecided again.
            decided_by=None,
            decided_at=None,
            decision_reason="",
        )
        locked.destinations.all().delete()
        RequestDestination.objects.bulk_create(RequestDestination(request=locked, **d.__dict__) for d in cleaned)
        record_event(
            actor=actor,
            action="request.resubmitted",
            obj=locked,
            before=before,
            after={**locked.snapshot(), "revision": locked.revision, "destinations": [d.__dict__ for d in cleaned]},
            reason=justification,
        )
        _ask_approvers(locked, event="resubmitted")
    return locked


def _destinations_of(request: ExceptionRequest) -> list[dict[str, object]]:
    return [d.as_dict() for d in request.destinations.all()]


def narrow_request(
    *,
    actor: Any,
    request: ExceptionRequest,
    lifetime: timedelta | None = None,
    keep_destination_ids: Sequence[int] | None = None,
    reason: str = "",
    now: datetime,
) -> ExceptionRequest:
    """An approver's narrowing before approving: a shorter lifetime, fewer destinations; never wider.

    The caller holds the transaction and the row lock (``lock_request``) and has
    checked that ``actor`` may decide. The risk tier is kept: narrowing cannot
    raise it, and the stricter rule already matched keeps counting.
    """
    current = list(request.destinations.all())
    errors = narrowing_errors(
        requested_lifetime=request.lifetime,
        destination_ids=[d.pk for d in current],
        lifetime=lifetime,
        keep_ids=keep_destination_ids,
    )
    if errors:
        raise ValidationError(errors)
    keep = {d.pk for d in current} if keep_destination_ids is None else set(keep_destination_ids)
    dropped = [d for d in current if d.pk not in keep]
    new_lifetime = lifetime if lifetime is not None else request.lifetime
    if not dropped and new_lifetime == request.lifetime:
        return request
    before = {
        "lifetime_hours": int(request.lifetime.total_seconds() // 3600),
        "destinations": [d.as_dict() for d in current],
    }
    RequestDestination.objects.filter(pk__in=[d.pk for d in dropped]).delete()
    ExceptionRequest.objects.filter(pk=request.pk).update(lifetime=new_lifetime, updated_at=now)
    request.lifetime = new_lifetime
    record_event(
        actor=actor,
        action="request.narrowed",
        obj=request,
        before=before,
        after={
            "lifetime_hours": int(new_lifetime.total_seconds() // 3600),
            "destinations": [d.as_dict() for d in current if d.pk in keep],
            "dropped": [str(d) for d in dropped],
        },
        reason=reason,
    )
    return request


def lock_request(request: ExceptionRequest) -> ExceptionRequest:
    """The request row, locked for the rest of the transaction, with its workload and team."""
    return ExceptionRequest.objects.select_for_update().select_related("workload__team").get(pk=request.pk)


def move_request(request: ExceptionRequest, target: str, *, now: datetime, **fields: Any) -> None:
    """Conditional update: only if the status is still the one we read."""
    check_request_transition(request.status, target)
    updated = ExceptionRequest.objects.filter(pk=request.pk, status=request.status).update(
        status=target, updated_at=now, **fields
    )
    if updated != 1:
        raise TransitionError(f"Request #{request.pk} changed while you were acting on it; reload and try again.")
    request.status = target
    for name, value in fields.items():
        setattr(request, name, value)


def submit_draft(*, actor: Any, request: ExceptionRequest) -> ExceptionRequest:
    with transaction.atomic():
        locked = lock_request(request)
        if locked.requester_id != user_of(actor).pk:
            raise PermissionDenied("Only the author of a draft may submit it.")
        before = locked.status
        now = timezone.now()
        move_request(locked, RequestStatus.PENDING, now=now, submitted_at=now)
        record_event(
            actor=actor,
            action="request.submitted",
            obj=locked,
            before={"status": before},
            after={"status": locked.status},
        )
        _ask_approvers(locked, event="submitted")
        emit_request("request.created", locked)
    return locked


def cancel_request(*, actor: Any, request: ExceptionRequest, reason: str = "") -> ExceptionRequest:
    with transaction.atomic():
        locked = lock_request(request)
        denial = cancel_denial(user_of(actor), locked)
        if denial:
            raise PermissionDenied(denial)
        before = locked.status
        move_request(locked, RequestStatus.CANCELLED, now=timezone.now())
        record_event(
            actor=actor,
            action="request.cancelled",
            obj=locked,
            before={"status": before},
            after={"status": locked.status},
            reason=reason.strip(),
        )
    return locked


def move_requests(
    ids: Iterable[int], *, from_status: str, target: str, actor: Actor, now: datetime, reason: str = ""
) -> int:
    """Move the requests still in ``from_status`` to ``target``: lock, update, one audit event each."""
    check_request_transition(from_status, target)
    moved_ids = list(
        ExceptionRequest.objects.filter(pk__in=list(ids), status=from_status)
        .select_for_update()
        .values_list("id", flat=True)
    )
    if not moved_ids:
        return 0
    ExceptionRequest.objects.filter(pk__in=moved_ids).update(status=target, updated_at=now)
    if from_status == RequestStatus.APPROVED and target == RequestStatus.ACTIVE:
        # The requester hears when a scheduled request goes live.
        hooks.approvals.get().requests_activated(moved_ids)
    record_events(
        [
            PendingEvent(
                actor=actor,
                action=f"request.{target}",
                object_type=REQUEST_TYPE,
                object_id=str(request_id),
                before={"status": from_status},
                after={"status": target},
                reason=reason,
            )
            for request_id in moved_ids
        ]
    )
    return len(moved_ids)


def close_finished_requests(
    request_ids: Iterable[int] | None, *, target: str, actor: Actor, now: datetime, reason: str = ""
) -> int:
    """Requests whose grants are all closed take the state of the change that closed the last one.

    ``request_ids=None`` looks at every approved or active request (the sweep after a run).
    """
    still_open = Grant.objects.filter(request_id=OuterRef("pk"), status__in=OPEN_GRANT_STATUSES)
    finished = ExceptionRequest.objects.filter(status__in=[RequestStatus.APPROVED, RequestStatus.ACTIVE]).exclude(
        Exists(still_open)
    )
    if request_ids is not None:
        finished = finished.filter(id__in=set(request_ids))
    by_status: dict[str, list[int]] = defaultdict(list)
    for request_id, status in finished.values_list("id", "status"):
        by_status[status].append(request_id)
    return sum(
        move_requests(ids, from_status=status, target=target, actor=actor, now=now, reason=reason)
        for status, ids in by_status.items()
    )
