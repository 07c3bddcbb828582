"""The operations page's model: the periodic jobs (schedule, last run, next run, last error)
and putting parked side effects back in the queue (an audited operator action, so it lives
above the audit layer, not in the outbox itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.services import Actor, record_event
from foundation.outbox.models import OutboxMessage, OutboxStatus
from traffic.models import JobState


@dataclass(frozen=True)
class JobRow:
    name: str
    task: str
    enabled: bool
    schedule: str
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_error: str
    last_failure_at: datetime | None


def periodic_jobs(*, now: datetime) -> list[JobRow]:
    states = {s.task: s for s in JobState.objects.all()}
    rows = []
    for task in PeriodicTask.objects.select_related("interval", "crontab").order_by("name"):
        schedule = task.schedule
        next_run = None
        if task.enabled and schedule is not None:
            # Celery's estimate is the time left from now until the run after ``last_run_at``.
            remaining = schedule.remaining_estimate(task.last_run_at or now)
            next_run = now + max(remaining, timedelta(0))
        state = states.get(task.task)
        failed_last = (
            state is not None
            and state.last_failure_at is not None
            and (state.last_success_at is None or state.last_failure_at > state.last_success_at)
        )
        rows.append(
            JobRow(
                name=task.name,
                task=task.task,
                enabled=task.enabled,
                schedule=str(task.interval or task.crontab or task.clocked or task.solar or ""),
                last_run_at=task.last_run_at,
                next_run_at=next_run,
                last_error=state.last_error if failed_last and state else "",
                last_failure_at=state.last_failure_at if state else None,
            )
        )
    return rows


def retry_parked(*, actor: Actor, message_ids: list[int], now: datetime | None = None) -> int:
    """Put parked rows back in the queue with a fresh attempt budget; one audit event per row."""
    now = now or timezone.now()
    retried = 0
    with transaction.atomic():
        for message in OutboxMessage.objects.select_for_update().filter(pk__in=message_ids, status=OutboxStatus.PARKED):
            before = {"status": message.status, "attempts": message.attempts, "last_error": message.last_error}
            OutboxMessage.objects.filter(pk=message.pk, status=OutboxStatus.PARKED).update(
                status=OutboxStatus.PENDING, attempts=0, available_at=now
            )
            record_event(
                actor=actor,
                action="outbox.retried",
                obj=message,
                before=before,
                after={"status": OutboxStatus.PENDING, "attempts": 0},
                reason=f"{message.kind} {message.idempotency_key}",
            )
            retried += 1
    return retried
