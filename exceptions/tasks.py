"""Scheduled jobs. Each takes ids or nothing, calls one service, owns its retries."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from django.db import OperationalError

from egress_portal.context import request_id_scope
from exceptions import reminders
from exceptions.bundle.policy_repository import PublishError
from exceptions.services import batches
from exceptions.services import publications as publishing


def task_scope(task: Task[..., Any]) -> AbstractContextManager[str]:
    """Audit events written by a task carry its id as their request id."""
    return request_id_scope(f"task-{task.request.id or 'local'}")


def _parse_now(now: str | None) -> datetime | None:
    return datetime.fromisoformat(now) if now else None


# A database hiccup is transient: retry with backoff. Anything else is a bug
# (permanent) and surfaces in the worker log without retries. Side effects are
# outbox rows these jobs write in their transactions, so a retry never repeats one.
TRANSIENT = (OperationalError,)


@shared_task(
    name="exceptions.expire_due_grants",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def expire_due_grants(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return batches.expire_due_grants(now=_parse_now(now))


@shared_task(
    name="exceptions.activate_due_grants",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def activate_due_grants(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return batches.activate_due_grants(now=_parse_now(now))


@shared_task(
    name="exceptions.publish_bundle",
    bind=True,
    autoretry_for=(PublishError, OperationalError),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def publish_bundle(self: Task[..., str], trigger: str = "manual", refresh: bool = False) -> str:
    """Publish the whole current state; a retry after a failure carries everything.

    Grant changes publish through the outbox (``bundle.publish`` rows); this task
    is the periodic safety net and the manual trigger.
    """
    with task_scope(self):
        return publishing.publish_bundle(trigger=trigger, refresh=refresh).status


@shared_task(
    name="exceptions.send_expiry_reminders",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def send_expiry_reminders(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return reminders.send_expiry_reminders(now=_parse_now(now))
