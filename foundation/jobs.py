"""What every Celery task of the portal shares: its audit request id, what counts as transient, its clock."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from celery import Task
from django.db import OperationalError

from foundation.context import request_id_scope

# A database hiccup is transient: retry with backoff. Anything else is a bug
# (permanent) and surfaces in the worker log without retries. Side effects are
# outbox rows these jobs write in their transactions, so a retry never repeats one.
TRANSIENT = (OperationalError,)


def task_scope(task: Task[..., Any]) -> AbstractContextManager[str]:
    """Audit events written by a task carry its id as their request id."""
    return request_id_scope(f"task-{task.request.id or 'local'}")


def parse_now(now: str | None) -> datetime | None:
    """A task's optional ``now`` (ISO 8601, JSON-serialisable) as a datetime."""
    return datetime.fromisoformat(now) if now else None
