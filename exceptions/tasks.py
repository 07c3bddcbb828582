"""Scheduled jobs. Each takes ids or nothing, calls one service, owns its retries."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import OperationalError

from audit.services import SYSTEM
from bundle.policy_repository import PublishError
from exceptions import reminders
from exceptions.services import batches, provider_ranges
from exceptions.services import publications as publishing
from foundation.jobs import TRANSIENT, parse_now, task_scope


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
        return batches.expire_due_grants(now=parse_now(now))


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
        return batches.activate_due_grants(now=parse_now(now))


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
        return reminders.send_expiry_reminders(now=parse_now(now))


@shared_task(
    name="exceptions.sync_provider_ranges",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def sync_provider_ranges(self: Task[..., str], provider: str) -> str:
    """A provider's range file from its configured source; a bad or unreachable file fails this run only."""
    with task_scope(self):
        return provider_ranges.sync_configured_provider(actor=SYSTEM, provider=provider)
