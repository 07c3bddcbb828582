"""Housekeeping of the integration API: expired Idempotency-Key outcomes."""

from __future__ import annotations

from celery import Task, shared_task

from exceptions.api.idempotency import purge_expired
from foundation.jobs import TRANSIENT, parse_now, task_scope


@shared_task(
    name="api.purge_idempotency_records",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def purge_idempotency_records(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return purge_expired(now=parse_now(now))
