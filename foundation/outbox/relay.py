"""The relay: claim due outbox rows, deliver each through its kind's handler, record the outcome.

Claiming is a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
relays running at once split the rows) that leases the rows: their
``available_at`` moves to the end of the lease. Delivery happens after the
commit, outside any transaction. A relay that dies mid-delivery leaves its rows
leased; when the lease ends they are due again and another relay delivers them
(at least once; the idempotency key makes the repeat harmless).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from foundation.outbox.errors import DeliveryError
from foundation.outbox.handlers import handler_for
from foundation.outbox.models import OutboxMessage, OutboxOutcome, OutboxStatus, OutboxTally
from foundation.upserts import add_to_rows

logger = logging.getLogger(__name__)


@dataclass
class RelayResult:
    delivered: int = 0
    retried: int = 0
    parked: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.delivered + self.retried + self.parked


def kinds_for_queue(queue: str | None) -> Q | None:
    """Which kinds the relay on ``queue`` delivers: those routed to it, or every unrouted kind on
    the default queue; None when no kind is routed to ``queue``."""
    if queue is None:
        return Q()
    routes: dict[str, str] = settings.OUTBOX_KIND_QUEUES
    if queue == settings.CELERY_TASK_DEFAULT_QUEUE:
        elsewhere = [kind for kind, routed in routes.items() if routed != queue]
        return ~Q(kind__in=elsewhere) if elsewhere else Q()
    mine = [kind for kind, routed in routes.items() if routed == queue]
    return Q(kind__in=mine) if mine else None


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, then scaled by 0.5-1.0."""
    base: float = settings.OUTBOX_BACKOFF_BASE_SECONDS
    ceiling: float = settings.OUTBOX_BACKOFF_MAX_SECONDS
    delay = min(ceiling, base * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret


def _claim(*, queue: str | None, now: datetime, lease_until: datetime, limit: int) -> list[OutboxMessage]:
    kinds = kinds_for_queue(queue)
    if kinds is None:
        return []
    due = (
        OutboxMessage.objects.filter(kinds, status=OutboxStatus.PENDING, available_at__lte=now)
        .order_by("available_at", "id")
        .only("id")
    )
    with transaction.atomic():
        if connection.vendor == "postgresql":
            select_sql, params = due.select_for_update(skip_locked=True).values("id")[:limit].query.sql_with_params()
            table = OutboxMessage._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"WITH due AS ({select_sql}) "  # noqa: S608 - SQL from the ORM, values are parameters
                    f'UPDATE "{table}" AS m SET "available_at" = %s, "attempts" = m."attempts" + 1 '
                    'FROM due WHERE m."id" = due."id" '
                    'RETURNING m."id", m."kind", m."payload", m."idempotency_key", m."attempts", m."revision"',
                    [*params, lease_until],
                )
                rows: list[tuple[Any, ...]] = cursor.fetchall()
            return sorted(
                (
                    OutboxMessage(
                        id=row[0],
                        kind=row[1],
                        # Django loads jsonb as text and decodes it in the field; a raw cursor must do the same.
                        payload=json.loads(row[2]) if isinstance(row[2], str) else row[2],
                        idempotency_key=row[3],
                        attempts=row[4],
                        revision=row[5],
                        status=OutboxStatus.PENDING,
                        available_at=lease_until,
                    )
                    for row in rows
                ),
                key=lambda m: m.pk,
            )
        # SQLite: the transaction is IMMEDIATE (one writer at a time), so select-then-update cannot race.
        ids = list(due.values_list("id", flat=True)[:limit])
        OutboxMessage.objects.filter(id__in=ids).update(available_at=lease_until, attempts=F("attempts") + 1)
        return list(OutboxMessage.objects.filter(id__in=ids).order_by("id"))


def _same_claim(messages: list[OutboxMessage]) -> Q:
    """Rows still as this relay claimed them: not re-armed (revision) and not re-claimed (attempts)."""
    first, *rest = messages
    condition = Q(pk=first.pk, revision=first.revision, attempts=first.attempts)
    for message in rest:
        condition |= Q(pk=message.pk, revision=message.revision, attempts=message.attempts)
    return condition


def tally(counts: Counter[tuple[str, str]]) -> None:
    """Add to the (kind, outcome) counters, atomically: relays running at once never lose a count."""
    add_to_rows(
        OutboxTally._meta.db_table,
        ["kind", "outcome"],
        [("kind", "varchar"), ("outcome", "varchar"), ("count", "bigint")],
        [(kind, outcome, count) for (kind, outcome), count in counts.items() if count],
        add=["count"],
    )


def _mark_delivered(messages: list[OutboxMessage], *, now: datetime) -> None:
    by_kind: dict[str, list[OutboxMessage]] = {}
    for message in messages:
        by_kind.setdefault(message.kind, []).append(message)
    for kind, delivered in sorted(by_kind.items()):
        for start in range(0, len(delivered), 200):
            chunk = delivered[start : start + 200]
            with transaction.atomic():
                # Only rows this relay still held count (one re-armed or re-claimed meanwhile is not delivered here).
                marked = OutboxMessage.objects.filter(_same_claim(chunk), status=OutboxStatus.PENDING).update(
                    status=OutboxStatus.DELIVERED, delivered_at=now, last_error=""
                )
                tally(Counter({(kind, OutboxOutcome.DELIVERED.value): marked}))


def _mark_failed(message: OutboxMessage, error: DeliveryError, *, now: datetime, result: RelayResult) -> None:
    park = error.permanent or message.attempts >= settings.OUTBOX_MAX_ATTEMPTS
    changes: dict[str, Any] = {"last_error": str(error)[:4000]}
    if park:
        changes["status"] = OutboxStatus.PARKED
        result.parked += 1
    else:
        changes["available_at"] = now + backoff(message.attempts)
        result.retried += 1
    with transaction.atomic():
        if OutboxMessage.objects.filter(_same_claim([message]), status=OutboxStatus.PENDING).update(**changes):
            outcome = OutboxOutcome.PARKED if park else OutboxOutcome.RETRIED
            tally(Counter({(message.kind, outcome.value): 1}))
    result.errors.append(f"{message.kind} #{message.pk}: {error}")
    logger.warning(
        "outbox %s #%s attempt %s failed (%s): %s",
        message.kind,
        message.pk,
        message.attempts,
        "parked" if park else "will retry",
        error,
    )


def _release(messages: list[OutboxMessage], *, now: datetime) -> None:
    """Give back claimed rows this relay had no time for, without counting an attempt."""
    if messages:
        OutboxMessage.objects.filter(_same_claim(messages), status=OutboxStatus.PENDING).update(
            available_at=now, attempts=F("attempts") - 1
        )


def relay_due(
    *,
    queue: str | None = None,
    now: datetime | None = None,
    batch_size: int | None = None,
    max_seconds: float | None = None,
) -> RelayResult:
    """Deliver due rows (of ``queue``'s kinds) until none is due or the time budget is spent."""
    batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
    budget = settings.OUTBOX_RELAY_MAX_SECONDS if max_seconds is None else max_seconds
    lease = timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    started = time.monotonic()
    result = RelayResult()
    while time.monotonic() - started < budget:
        claimed_at = now or timezone.now()
        batch = _claim(queue=queue, now=claimed_at, lease_until=claimed_at + lease, limit=batch_size)
        if not batch:
            break
        batch_started = time.monotonic()
        delivered: list[OutboxMessage] = []
        for index, message in enumerate(batch):
            # Never run past half the lease: the rest go back, so no other relay sees them as abandoned.
            if time.monotonic() - batch_started > lease.total_seconds() / 2:
                _release(batch[index:], now=now or timezone.now())
                break
            try:
                handler_for(message.kind)(message)
            except DeliveryError as exc:
                _mark_failed(message, exc, now=now or timezone.now(), result=result)
            except Exception as exc:
                logger.exception("outbox %s #%s: unexpected error", message.kind, message.pk)
                _mark_failed(message, DeliveryError(repr(exc)), now=now or timezone.now(), result=result)
            else:
                delivered.append(message)
        _mark_delivered(delivered, now=now or timezone.now())
        result.delivered += len(delivered)
        if len(batch) < batch_size:
            break
    return result


def parked_messages() -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.filter(status=OutboxStatus.PARKED).order_by("id")


def prune_delivered(*, now: datetime | None = None) -> int:
    """Delete delivered rows older than ``OUTBOX_KEEP_DELIVERED_DAYS`` (parked and pending rows stay)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.OUTBOX_KEEP_DELIVERED_DAYS)
    deleted, _ = OutboxMessage.objects.filter(status=OutboxStatus.DELIVERED, delivered_at__lt=cutoff).delete()
    return deleted
