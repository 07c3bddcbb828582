"""Services: the only writers of requests and grants.

Each public function runs in one transaction, checks permissions and
transitions, and records one audit event per object it changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.services import SYSTEM, Actor, PendingEvent, record_event, record_events
from exceptions.access import cancel_denial, revoke_denial, roles_for
from exceptions.choices import DataClass, GrantStatus, Purpose, RequestStatus
from exceptions.models import ExceptionRequest, Grant, RequestDestination, Workload
from exceptions.publishing import publish_on_commit
from exceptions.risk import LifetimeCaps, RiskAssessment, assess_risk, format_duration
from exceptions.state import (
    OPEN_GRANT_STATUSES,
    TransitionError,
    check_grant_transition,
    check_request_transition,
)
from exceptions.validators import is_wildcard, validate_destination_host, validate_port, validate_protocol

GRANT_TYPE = "exceptions.grant"
REQUEST_TYPE = "exceptions.exceptionrequest"
DESIRED_START_SLACK = timedelta(minutes=5)
MAX_DESIRED_START_AHEAD = timedelta(days=90)


@dataclass(frozen=True)
class DestinationInput:
    host: str
    port: int
    protocol: str = "tcp"
    tls_required: bool = True


def lifetime_caps() -> LifetimeCaps:
    return LifetimeCaps(
        low=timedelta(days=settings.EGRESS_LIFETIME_CAP_LOW_DAYS),
        medium=timedelta(days=settings.EGRESS_LIFETIME_CAP_MEDIUM_DAYS),
        high=timedelta(days=settings.EGRESS_LIFETIME_CAP_HIGH_DAYS),
        diagnostics=timedelta(hours=settings.EGRESS_LIFETIME_CAP_DIAGNOSTICS_HOURS),
    )


def assess_request_risk(
    *, environment: str, hosts: Iterable[str], purpose: str, data_class: str, lifetime: timedelta | None
) -> RiskAssessment:
    return assess_risk(
        environment=environment,
        data_class=data_class,
        wildcard=any(is_wildcard(h) for h in hosts),
        purpose=purpose,
        lifetime=lifetime,
        caps=lifetime_caps(),
    )


def clean_destinations(raw: Sequence[Mapping[str, Any] | DestinationInput]) -> list[DestinationInput]:
    """Validate destination rows; errors are keyed ``destinations[i].field``."""
    errors: dict[str, list[str]] = {}
    cleaned: list[DestinationInput] = []
    seen: dict[tuple[str, int, str], int] = {}
    if not raw:
        raise ValidationError({"destinations": ["Add at least one destination (host, port, protocol)."]})
    for index, row in enumerate(raw):
        data = row.__dict__ if isinstance(row, DestinationInput) else row
        prefix = f"destinations[{index}]"
        values: dict[str, Any] = {}
        for field, validator, default in (
            ("host", validate_destination_host, None),
            ("port", validate_port, None),
            ("protocol", validate_protocol, "tcp"),
        ):
            value = data.get(field, default)
            if value is None or value == "":
                errors.setdefault(f"{prefix}.{field}", []).append(f"Destination {index + 1}: {field} is required.")
                continue
            try:
                values[field] = validator(value)
            except ValidationError as exc:
                errors.setdefault(f"{prefix}.{field}", []).extend(f"Destination {index + 1}: {m}" for m in exc.messages)
        if len(values) == 3:
            key = (values["host"], values["port"], values["protocol"])
            if key in seen:
                errors.setdefault(f"{prefix}.host", []).append(
                    f"Destination {index + 1} repeats destination {seen[key] + 1} "
                    f"({key[0]}:{key[1]}/{key[2]}); remove one."
                )
                continue
            seen[key] = index
            cleaned.append(DestinationInput(tls_required=bool(data.get("tls_required", True)), **values))
    if errors:
        raise ValidationError(errors)
    return cleaned


def lifetime_error(risk: RiskAssessment, lifetime: timedelta | None) -> str | None:
    """Why ``lifetime`` is too long for the assessed tier, or None when it fits."""
    if lifetime is None or risk.within_cap:
        return None
    tier_reasons = "; ".join(r for r in risk.reasons if "exceeds" not in r)
    cap = format_duration(risk.lifetime_cap)
    return (
        f"{format_duration(lifetime)} exceeds the {cap} cap for {risk.tier}-risk requests ({tier_reasons}). "
        f"Ask for {cap} or less and renew later."
    )


@dataclass(frozen=True)
class SubmissionPreview:
    hosts: list[str]
    errors: dict[str, list[str]]
    risk: RiskAssessment | None


def preview_submission(
    *,
    workload: Workload | None,
    destinations: Sequence[Mapping[str, Any]],
    purpose: str,
    data_class: str,
    lifetime: timedelta | None,
) -> SubmissionPreview:
    """What submit_request would say about these destinations and this lifetime; writes nothing."""
    errors: dict[str, list[str]] = {}
    hosts: list[str] = []
    if destinations:
        try:
            hosts = [d.host for d in clean_destinations(destinations)]
        except ValidationError as exc:
            errors = dict(exc.message_dict)
    risk = None
    if workload is not None:
        risk = assess_request_risk(
            environment=workload.environment,
            hosts=hosts or [str(d.get("host", "")) for d in destinations],
            purpose=purpose,
            data_class=data_class,
            lifetime=lifetime,
        )
        cap_error = lifetime_error(risk, lifetime)
        if cap_error:
            errors["lifetime"] = [cap_error]
    return SubmissionPreview(hosts, errors, risk)


def _check_choice(errors: dict[str, list[str]], field: str, value: str, choices: Any) -> None:
    if value not in choices.values:
        options = ", ".join(choices.values)
        errors.setdefault(field, []).append(
            f"'{value}' is not a valid {field.replace('_', ' ')}; choose one of: {options}."
        )


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
        errors["workload"] = [f"You are not a member of team {workload.team.name}, which owns {workload.name}."]
    _check_choice(errors, "purpose", purpose, Purpose)
    _check_choice(errors, "data_class", data_class, DataClass)
    justification = (justification or "").strip()
    minimum = settings.EGRESS_JUSTIFICATION_MIN_LENGTH
    if len(justification) < minimum:
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


def issue_grants(*, actor: Actor, request: ExceptionRequest, now: datetime) -> list[Grant]:
    """Create the grants of an approved request; the caller holds its transaction."""
    valid_from = max(now, request.desired_start or now)
    expires_at = valid_from + request.lifetime
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


def _move_requests(
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


def _close_finished_requests(
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
        _move_requests(ids, from_status=status, target=target, actor=actor, now=now, reason=reason)
        for status, ids in by_status.items()
    )


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
        _close_finished_requests([locked.request_id], target=RequestStatus.REVOKED, actor=actor, now=now, reason=reason)
        publish_on_commit(f"grant {locked.pk} revoked")
    return locked


def _claim_batch(
    filter_kwargs: dict[str, Any], *, after_id: int, batch_size: int, target: str
) -> list[tuple[int, str, int]]:
    """Move the next batch of due grants to ``target``; return (id, old status, request id).

    Keyset pagination (ids after the last batch) keeps every batch cheap; rows
    another run has locked are skipped, so two runs at once split the work.
    """
    query = Grant.objects.filter(id__gt=after_id, **filter_kwargs).order_by("id")
    if connection.vendor == "postgresql":
        select_sql, params = (
            query.select_for_update(skip_locked=True)
            .values_list("id", "status", "request_id")[:batch_size]
            .query.sql_with_params()
        )
        table = Grant._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH due AS ({select_sql}) "  # noqa: S608 - SQL from the ORM, values are parameters
                f'UPDATE "{table}" AS g SET "status" = %s FROM due WHERE g."id" = due."id" '
                'RETURNING g."id", due."status", due."request_id"',
                [*params, target],
            )
            return sorted(cursor.fetchall())
    batch = list(query.values_list("id", "status", "request_id")[:batch_size])
    Grant.objects.filter(id__in=[row[0] for row in batch], status__in=OPEN_GRANT_STATUSES).update(status=target)
    return batch


def _move_grants_in_batches(
    *,
    filter_kwargs: dict[str, Any],
    target: str,
    action: str,
    request_target: str,
    request_from: str | None,
    now: datetime,
    batch_size: int,
    actor: Actor,
) -> int:
    moved = 0
    after_id = 0
    while True:
        with transaction.atomic():
            batch = _claim_batch(filter_kwargs, after_id=after_id, batch_size=batch_size, target=target)
            if not batch:
                return moved
            after_id = batch[-1][0]
            record_events(
                [
                    PendingEvent(
                        actor=actor,
                        action=action,
                        object_type=GRANT_TYPE,
                        object_id=str(grant_id),
                        before={"status": status},
                        after={"status": target},
                    )
                    for grant_id, status, _ in batch
                ]
            )
            request_ids = {request_id for _, _, request_id in batch}
            if request_from is None:
                _close_finished_requests(request_ids, target=request_target, actor=actor, now=now)
            else:
                _move_requests(request_ids, from_status=request_from, target=request_target, actor=actor, now=now)
            moved += len(batch)
            publish_on_commit(f"{len(batch)} grant(s) {target}")
        if len(batch) < batch_size:
            return moved


def activate_due_grants(*, now: datetime | None = None, batch_size: int = 2000) -> int:
    """Scheduled grants whose start has come become active (and so do their requests)."""
    now = now or timezone.now()
    return _move_grants_in_batches(
        filter_kwargs={"status": GrantStatus.SCHEDULED, "valid_from__lte": now, "expires_at__gt": now},
        target=GrantStatus.ACTIVE,
        action="grant.activated",
        request_target=RequestStatus.ACTIVE,
        request_from=RequestStatus.APPROVED,
        now=now,
        batch_size=batch_size,
        actor=SYSTEM,
    )


def expire_due_grants(*, now: datetime | None = None, batch_size: int = 2000) -> int:
    """Expire every open grant whose time is up; batched, idempotent, safe to run twice at once."""
    now = now or timezone.now()
    expired = _move_grants_in_batches(
        filter_kwargs={"status__in": OPEN_GRANT_STATUSES, "expires_at__lte": now},
        target=GrantStatus.EXPIRED,
        action="grant.expired",
        request_target=RequestStatus.EXPIRED,
        request_from=None,
        now=now,
        batch_size=batch_size,
        actor=SYSTEM,
    )
    # A concurrent run may have closed the last grants of a request we both
    # saw as still open; this sweep closes such requests.
    with transaction.atomic():
        _close_finished_requests(None, target=RequestStatus.EXPIRED, actor=SYSTEM, now=now)
    return expired
