"""Jobs over many grants: activate the due scheduled ones, expire the due open ones.

Keyset batches claimed with ``FOR UPDATE SKIP LOCKED``, so two runs at once split the work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.services import SYSTEM, Actor, PendingEvent, record_events
from exceptions import hooks
from exceptions.choices import Environment, GrantStatus, RequestStatus
from exceptions.events import emit_grants
from exceptions.models import Grant
from exceptions.services.grants import GRANT_TYPE
from exceptions.services.publishes import queue_publish
from exceptions.services.requests import close_finished_requests, move_requests
from exceptions.state import OPEN_GRANT_STATUSES


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
                close_finished_requests(request_ids, target=request_target, actor=actor, now=now)
            else:
                move_requests(request_ids, from_status=request_from, target=request_target, actor=actor, now=now)
            moved += len(batch)
            queue_publish(trigger=f"{len(batch)} grant(s) {target}")
            # The grants are read only when a webhook listens to this event.
            emit_grants(action, (g for g in Grant.objects.filter(pk__in=[row[0] for row in batch]).order_by("id")))
        if len(batch) < batch_size:
            return moved


def activate_due_grants(*, now: datetime | None = None, batch_size: int = 2000) -> int:
    """Scheduled grants whose start has come become active (and so do their requests).

    Grants of an environment under a change freeze wait: a freeze blocks going
    live (approvals.services.activate_due_requests moves them past it).
    """
    now = now or timezone.now()
    due: dict[str, Any] = {"status": GrantStatus.SCHEDULED, "valid_from__lte": now, "expires_at__gt": now}
    frozen = hooks.approvals.get().frozen_environments(now)
    if frozen:
        due["workload__environment__in"] = sorted(set(Environment.values) - frozen)
    return _move_grants_in_batches(
        filter_kwargs=due,
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
        close_finished_requests(None, target=RequestStatus.EXPIRED, actor=SYSTEM, now=now)
    return expired
