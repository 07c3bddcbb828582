"""The daily outcome snapshot job."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.db import OperationalError

from egress_portal.context import request_id_scope
from outcomes import services


@shared_task(
    name="outcomes.take_daily_snapshot",
    bind=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def take_daily_snapshot(self: Task[..., Any]) -> str:
    with request_id_scope(f"task-{self.request.id or 'local'}"):
        return services.take_daily_snapshot().day.isoformat()
