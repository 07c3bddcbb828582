"""The daily stale sweep and the pruning of old de-duplication digests."""

from __future__ import annotations

from celery import Task, shared_task

from foundation.jobs import TRANSIENT, task_scope
from traffic.services.ingest import prune_seen_records
from traffic.services.stale import sweep_stale_grants


@shared_task(
    name="traffic.stale_sweep",
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def stale_sweep(self: Task[..., dict[str, int]]) -> dict[str, int]:
    with task_scope(self):
        result = sweep_stale_grants()
    return {"noticed": result.noticed, "cleared": result.cleared, "revoked": result.revoked}


@shared_task(name="traffic.prune", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def prune() -> int:
    """Digests and distinct flows of days too old to be accepted again can go."""
    return prune_seen_records()
