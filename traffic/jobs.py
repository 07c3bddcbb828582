"""Recording each task's last success and failure (Celery signals, connected in egress_portal/celery.py).

Infrastructure bookkeeping, not domain logic: it only feeds the operations page.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from traffic.models import JobState

logger = logging.getLogger(__name__)


def record_success(sender: Any = None, **kwargs: Any) -> None:
    name = getattr(sender, "name", None)
    if not name:
        return
    try:
        updated = JobState.objects.filter(task=name).update(last_success_at=timezone.now())
        if not updated:
            JobState.objects.get_or_create(task=name, defaults={"last_success_at": timezone.now()})
    except DatabaseError as exc:  # bookkeeping must never fail a task
        logger.warning("could not record the success of %s: %s", name, exc)


def record_failure(sender: Any = None, exception: BaseException | None = None, **kwargs: Any) -> None:
    name = getattr(sender, "name", None)
    if not name:
        return
    try:
        JobState.objects.update_or_create(
            task=name, defaults={"last_failure_at": timezone.now(), "last_error": repr(exception)[:4000]}
        )
    except DatabaseError as exc:
        logger.warning("could not record the failure of %s: %s", name, exc)


def unrecovered_failure(task: str) -> tuple[datetime, str] | None:
    """When ``task`` last failed and why, unless a later run succeeded (audit.hooks.job_last_failure)."""
    job = JobState.objects.filter(task=task).first()
    if job is None or job.last_failure_at is None:
        return None
    if job.last_success_at and job.last_success_at > job.last_failure_at:
        return None
    return job.last_failure_at, job.last_error
