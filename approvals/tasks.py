"""Scheduled approval jobs. Each calls one service; a database hiccup is retried."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from approvals import breakglass, services
from foundation.jobs import TRANSIENT, parse_now, task_scope


@shared_task(
    name="approvals.expire_stale_requests",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def expire_stale_requests(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return services.expire_stale_requests(now=parse_now(now))


@shared_task(
    name="approvals.activate_due_requests",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def activate_due_requests(self: Task[..., Any], now: str | None = None) -> int:
    with task_scope(self):
        return services.activate_due_requests(now=parse_now(now))


@shared_task(
    name="approvals.remind_missing_approvals",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def remind_missing_approvals(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return services.remind_missing_approvals(now=parse_now(now))


@shared_task(
    name="approvals.remind_breakglass_reviews",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def remind_breakglass_reviews(self: Task[..., int], now: str | None = None) -> int:
    with task_scope(self):
        return breakglass.remind_unreviewed(now=parse_now(now))
