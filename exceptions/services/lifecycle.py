"""The one writer of a grant's status: issue, activate, expire, revoke, shorten, supersede.

Every other module (the grant pages and API, approvals, break-glass, the stale
sweep, the batch jobs) asks this one. Each change here is checked against the
transition table (``exceptions.state``) and writes, in the caller's
transaction, one audit event per grant, its webhook event and the publish
re-arm, so no path can forget to signal a revocation. A test scans the code
for any other writer of ``Grant.status`` (tests/exceptions/test_grant_lifecycle.py).

Callers decide who may act (permissions live with them, and the approvals layer
above passes its answers in); this module decides what a change does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from audit.services import SYSTEM, Actor, PendingEvent, record_events
from bundle.provider_ranges import service_of
from exceptions.choices import Environment, GrantStatus, RequestStatus, RevokeKind
from exceptions.events import emit, grant_data
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.publishes import queue_publish
from exceptions.services.requests import close_finished_requests, move_requests
from exceptions.state import (
    GRANT_INITIAL_STATUSES,
    GRANT_TRANSITIONS,
    OPEN_GRANT_STATUSES,
    TransitionError,
    check_grant_transition,
)

GRANT_TYPE = "exceptions.grant"

# How a grant change asks for a bundle publish; the default is the coalesced
# ``bundle.publish`` row. Break-glass passes its own priority publish.
Publisher = Callable[[str], None]

# The webhook event of each status a grant can take (none for a scheduled start
# moving later: that is a reschedule, not a status change).
STATUS_EVENTS: dict[str, str] = {
    GrantStatus.SCHEDULED: "grant.scheduled",
    GrantStatus.ACTIVE: "grant.activated",
    GrantStatus.EXPIRED: "grant.expired",
    GrantStatus.REVOKED: "grant.revoked",
}
SHORTENED_EVENT = "grant.shortened"
RESCHEDULED_EVENT = "grant.rescheduled"

# The audit action of a revocation; a renewal taking over reads as what it is.
_REVOKE_ACTIONS: dict[str, str] = {RevokeKind.SUPERSEDED: "grant.superseded"}


def _queue_publish(trigger: str) -> None:
    queue_publish(trigger=trigger)


def sources_of(target: str) -> list[str]:
    """The statuses the transition table lets a grant leave for ``target``."""
    return sorted(status for status, targets in GRANT_TRANSITIONS.items() if target in targets)


def revoke_action(kind: str) -> str:
    return _REVOKE_ACTIONS.get(kind, "grant.revoked")


def _emit_status(status: str, grants: Iterable[Grant], extra: Mapping[str, Any] | None = None) -> int:
    data = dict(extra or {})
    return emit(STATUS_EVENTS[status], occurrences=((f"grant:{g.pk}", {**grant_data(g), **data}) for g in grants))


# --- Issue -----------------------------------------------------------------------


def _audit_grants(
    actor: Actor,
    action: str,
    changes: Iterable[tuple[Grant, Mapping[str, Any] | None, Mapping[str, Any]]],
    reason: str = "",
) -> None:
    """One audit event per changed grant: (grant, before, after), in the caller's transaction."""
    record_events(
        [
            PendingEvent(
                actor=actor,
                action=action,
                object_type=GRANT_TYPE,
                object_id=str(grant.pk),
                before=dict(before) if before is not None else None,
                after=dict(after),
                reason=reason,
            )
            for grant, before, after in changes
        ]
    )


def issue(
    *,
    actor: Actor,
    request: ExceptionRequest,
    destinations: Iterable[Any],
    valid_from: datetime,
    expires_at: datetime,
    now: datetime,
    trigger: str,
    breakglass: bool = False,
    publish: Publisher | None = None,
) -> list[Grant]:
    """Create one grant per destination (anything with host, port, protocol, tls_required).

    Active at once when ``valid_from`` has come, scheduled otherwise.
    """
    status = GrantStatus.ACTIVE if valid_from <= now else GrantStatus.SCHEDULED
    if status not in GRANT_INITIAL_STATUSES:
        raise TransitionError(f"A grant cannot be issued as {status}.")
    with transaction.atomic():
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
                breakglass=breakglass,
            )
            for dest in destinations
        ]
        created = Grant.objects.bulk_create(grants)
        if any(g.pk is None for g in created):  # backends without RETURNING
            created = list(Grant.objects.filter(request=request).order_by("id"))
        _audit_grants(actor, "grant.issued", ((g, None, g.snapshot()) for g in created))
        (publish or _queue_publish)(trigger)
        _emit_status(status, created)
    return created


# --- Activate and expire in batches ----------------------------------------------------


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
    Grant.objects.filter(id__in=[row[0] for row in batch], status__in=sources_of(target)).update(status=target)
    return batch


def _move_due(
    *,
    due: dict[str, Any],
    target: str,
    request_target: str,
    request_from: str | None,
    now: datetime,
    batch_size: int,
    actor: Actor,
) -> int:
    """Move every grant matching ``due`` (and still in a status the table lets go to ``target``).

    Per batch: one conditional UPDATE, one audit event per grant (one insert, COPY
    when large), the requests that follow, one publish re-arm, one webhook emit.
    """
    filter_kwargs = {**due, "status__in": sources_of(target)}
    action = STATUS_EVENTS[target]
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
                close_finished_requests(request_ids, target=request_target, actor=actor, now=now)
            else:
                move_requests(request_ids, from_status=request_from, target=request_target, actor=actor, now=now)
            moved += len(batch)
            queue_publish(trigger=f"{len(batch)} grant(s) {target}")
            # The grants are read only when a webhook listens to this event.
            _emit_status(target, (g for g in Grant.objects.filter(pk__in=[row[0] for row in batch]).order_by("id")))
        if len(batch) < batch_size:
            return moved


def activate_due(
    *, now: datetime, batch_size: int = 2000, skip_environments: Iterable[str] = (), actor: Actor = SYSTEM
) -> int:
    """Scheduled grants whose start has come become active, and their approved requests too.

    ``skip_environments`` (e.g. those under a change freeze) wait.
    """
    due: dict[str, Any] = {"valid_from__lte": now, "expires_at__gt": now}
    skipped = set(skip_environments)
    if skipped:
        due["workload__environment__in"] = sorted(set(Environment.values) - skipped)
    return _move_due(
        due=due,
        target=GrantStatus.ACTIVE,
        request_target=RequestStatus.ACTIVE,
        request_from=RequestStatus.APPROVED,
        now=now,
        batch_size=batch_size,
        actor=actor,
    )


def expire_due(*, now: datetime, batch_size: int = 2000, actor: Actor = SYSTEM) -> int:
    """Every open grant whose time is up expires (and requests with no open grant left)."""
    return _move_due(
        due={"expires_at__lte": now},
        target=GrantStatus.EXPIRED,
        request_target=RequestStatus.EXPIRED,
        request_from=None,
        now=now,
        batch_size=batch_size,
        actor=actor,
    )


# --- Revoke -------------------------------------------------------------------------


def revoke(
    *,
    actor: Actor,
    grants: Sequence[int] | QuerySet[Grant],
    kind: str,
    reason: str,
    now: datetime,
    revoked_by: Any = None,
    audit_reason: str = "",
    expires_at: datetime | None = None,
    close_requests_as: str = RequestStatus.REVOKED,
    trigger: str = "",
    publish: Publisher | None = None,
    strict: bool = False,
) -> list[Grant]:
    """Revoke the open grants among ``grants`` (ids or a queryset); return the ones revoked.

    Locks them, so a concurrent expiry or revocation either ran before (the grant
    is skipped, or with ``strict`` refused) or waits. ``reason`` is stored on the
    grant and sent with ``grant.revoked`` next to ``reason_kind``; ``audit_reason``
    (default ``reason``) is the audit event's. ``expires_at`` also ends the grant's
    window there (a renewal taking over). Requests left with no open grant move
    to ``close_requests_as``.
    """
    if kind not in RevokeKind.values:
        raise ValueError(f"Unknown revoke kind {kind!r}; one of: {', '.join(RevokeKind.values)}.")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("A revocation needs a reason; the owning team reads it.")
    sources = sources_of(GrantStatus.REVOKED)
    with transaction.atomic():
        selected = grants if isinstance(grants, QuerySet) else Grant.objects.filter(pk__in=list(grants))
        locked = list(selected.select_for_update().order_by("id"))
        if strict:
            for grant in locked:
                check_grant_transition(grant.status, GrantStatus.REVOKED)
        locked = [g for g in locked if g.status in sources]
        if not locked:
            return []
        befores = {g.pk: g.snapshot() for g in locked}
        fields: dict[str, Any] = {
            "status": GrantStatus.REVOKED,
            "revoked_by": revoked_by,
            "revoked_at": now,
            "revoke_reason": reason,
            "revoke_kind": kind,
        }
        if expires_at is not None:
            fields["expires_at"] = expires_at
        updated = Grant.objects.filter(pk__in=[g.pk for g in locked], status__in=sources).update(**fields)
        if updated != len(locked):
            raise TransitionError("A grant changed while it was being revoked; reload and try again.")
        for grant in locked:
            for name, value in fields.items():
                setattr(grant, name, value)
        _audit_grants(
            actor,
            revoke_action(kind),
            ((g, befores[g.pk], {**g.snapshot(), "revoke_kind": kind}) for g in locked),
            audit_reason or reason,
        )
        close_finished_requests(
            {g.request_id for g in locked}, target=close_requests_as, actor=actor, now=now, reason=reason
        )
        (publish or _queue_publish)(trigger or f"{len(locked)} grant(s) revoked ({kind})")
        _emit_status(GrantStatus.REVOKED, locked, {"reason_kind": kind, "reason": reason})
    return locked


# --- Shorten and supersede ---------------------------------------------------------------


def shorten(
    *,
    actor: Actor,
    grant: Grant,
    expires_at: datetime,
    reason: str,
    action: str = "grant.shortened",
    trigger: str = "",
    reason_kind: str = "",
) -> Grant:
    """Bring an open grant's expiry forward (never later, never before its start)."""
    with transaction.atomic():
        locked = Grant.objects.select_for_update().get(pk=grant.pk)
        if locked.status not in OPEN_GRANT_STATUSES:
            raise TransitionError(f"Grant #{locked.pk} is {locked.status}; only an open grant can be shortened.")
        if not locked.valid_from < expires_at < locked.expires_at:
            raise ValueError("A shortened expiry lies after the grant's start and before its current expiry.")
        before = locked.snapshot()
        updated = Grant.objects.filter(pk=locked.pk, status=locked.status, expires_at=locked.expires_at).update(
            expires_at=expires_at
        )
        if updated != 1:
            raise TransitionError(f"Grant #{locked.pk} changed while you were shortening it; reload and try again.")
        # The caller's object (often loaded with its team and request) follows the change.
        grant.expires_at = locked.expires_at = expires_at
        _audit_grants(actor, action, [(locked, before, locked.snapshot())], reason)
        _queue_publish(trigger or f"grant {locked.pk} shortened")
        extra = {"reason": reason, **({"reason_kind": reason_kind} if reason_kind else {})}
        emit(
            SHORTENED_EVENT,
            occurrences=[(f"grant:{locked.pk}:{expires_at.isoformat()}", {**grant_data(locked), **extra})],
        )
    return grant


def reschedule(
    *, actor: Actor, request: ExceptionRequest, valid_from: datetime, expires_at: datetime, reason: str
) -> list[Grant]:
    """Move the window of ``request``'s scheduled grants (a freeze pushed its go-live); the lifetime moves with it.

    Only scheduled grants move: one that went live in the meantime keeps its window.
    """
    if not valid_from < expires_at:
        raise ValueError("A rescheduled window starts before it ends.")
    with transaction.atomic():
        locked = list(
            Grant.objects.select_for_update().filter(request=request, status=GrantStatus.SCHEDULED).order_by("pk")
        )
        moved = []
        for grant in locked:
            if (grant.valid_from, grant.expires_at) == (valid_from, expires_at):
                continue
            before = grant.snapshot()
            updated = Grant.objects.filter(pk=grant.pk, status=GrantStatus.SCHEDULED).update(
                valid_from=valid_from, expires_at=expires_at
            )
            if updated == 1:
                grant.valid_from, grant.expires_at = valid_from, expires_at
                moved.append((grant, before))
        if not moved:
            return []
        _audit_grants(actor, RESCHEDULED_EVENT, ((grant, before, grant.snapshot()) for grant, before in moved), reason)
        _queue_publish(f"request {request.pk} rescheduled")
        emit(
            RESCHEDULED_EVENT,
            occurrences=[
                (f"grant:{grant.pk}:{valid_from.isoformat()}", {**grant_data(grant), "reason": reason})
                for grant, _ in moved
            ],
        )
    return [grant for grant, _ in moved]


def supersede(*, actor: Actor, renewal: ExceptionRequest, starts_at: datetime, now: datetime) -> Grant | None:
    """A renewal takes over at ``starts_at``: the grant it renews ends exactly then (no gap, no overlap).

    Taking over now revokes the old grant at once (kind ``superseded``), so the next
    bundle holds only the renewal; taking over later shortens it to end then.
    """
    if renewal.renews_id is None:
        return None
    with transaction.atomic():
        old = Grant.objects.select_for_update().filter(pk=renewal.renews_id).first()
        if old is None or old.status not in OPEN_GRANT_STATUSES or old.expires_at <= starts_at:
            return None
        if starts_at <= old.valid_from:
            return None
        reason = f"renewed by request #{renewal.pk}"
        if starts_at > now:
            return shorten(
                actor=actor,
                grant=old,
                expires_at=starts_at,
                reason=reason,
                action=revoke_action(RevokeKind.SUPERSEDED),
                trigger=f"grant {old.pk} superseded",
                reason_kind=RevokeKind.SUPERSEDED,
            )
        [revoked] = revoke(
            actor=actor,
            grants=[old.pk],
            kind=RevokeKind.SUPERSEDED,
            reason=reason,
            now=now,
            expires_at=starts_at,
            # The old request ran its course: a renewal carries it on.
            close_requests_as=RequestStatus.EXPIRED,
            trigger=f"grant {old.pk} superseded",
            strict=True,
        )
        return revoked
