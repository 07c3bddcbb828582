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
from exceptions.access import cancel_denial, roles_for
from exceptions.choices import DataClass, Purpose, RequestStatus
from exceptions.models import ExceptionRequest, Grant, RequestDestination, Workload
from exceptions.services.submissions import (
    UNKNOWN_WORKLOAD,
    DestinationInput,
    assess_request_risk,
    check_choice,
    check_text_limits,
    clean_destinations,
    lifetime_error,
)
from exceptions.state import OPEN_GRANT_STATUSES, TransitionError, check_request_transition

REQUEST_TYPE = "exceptions.exceptionrequest"
DESIRED_START_SLACK = timedelta(minutes=5)
MAX_DESIRED_START_AHEAD = timedelta(days=90)


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
    now: datetime | None = None,
) -> ExceptionRequest:
    """File an exception request (pending, or a draft to finish later)."""
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if workload.team_id not in roles_for(actor).member_team_ids:
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
    try:
        cleaned = clean_destinations(destinations)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
        cleaned = []
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

    status = RequestStatus.DRAFT if draft else RequestStatus.PENDING
    with transaction.atomic():
        request = ExceptionRequest.objects.create(
            workload=workload,
            requester=actor,
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
        )
        RequestDestination.objects.bulk_create(RequestDestination(request=request, **d.__dict__) for d in cleaned)
        record_event(
            actor=actor,
            action="request.drafted" if draft else "request.submitted",
            obj=request,
            after={**request.snapshot(), "destinations": [d.__dict__ for d in cleaned]},
            reason=justification,
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
        if locked.requester_id != actor.pk:
            raise PermissionDenied("Only the author of a draft may submit it.")
        before = locked.status
        move_request(locked, RequestStatus.PENDING, now=timezone.now())
        record_event(
            actor=actor,
            action="request.submitted",
            obj=locked,
            before={"status": before},
            after={"status": locked.status},
        )
    return locked


def cancel_request(*, actor: Any, request: ExceptionRequest, reason: str = "") -> ExceptionRequest:
    with transaction.atomic():
        locked = lock_request(request)
        denial = cancel_denial(actor, locked)
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
