"""The daily outcome snapshot job."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from foundation.jobs import TRANSIENT, task_scope
from outcomes import services


@shared_task(
    name="outcomes.take_daily_snapshot",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def take_daily_snapshot(self: Task[..., Any]) -> str:
    with task_scope(self):
        return services.take_daily_snapshot().day.isoformat()
