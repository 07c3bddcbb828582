"""Scheduled audit jobs: each calls one service and owns its retries."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.db import OperationalError

from audit.checkpoint_git import CheckpointRepoError
from audit.checkpoints import write_checkpoint as write_checkpoint_service
from foundation.jobs import task_scope


@shared_task(
    name="audit.write_checkpoint",
    bind=True,
    # An unreachable repository or a database hiccup is transient. CheckpointRefused
    # (the chain no longer extends the last checkpoint) is not: it needs a person.
    autoretry_for=(CheckpointRepoError, OperationalError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def write_checkpoint(self: Task[..., Any]) -> int | None:
    """Sign the audit chain's head into the policy repository; returns its sequence number."""
    with task_scope(self):
        checkpoint = write_checkpoint_service()
    return checkpoint.seq if checkpoint else None
