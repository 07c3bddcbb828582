"""The relay task: beat starts it every few seconds per queue; a change may nudge it sooner
(``foundation.outbox.services.nudge_relay``, which sends it by name)."""

from __future__ import annotations

from celery import Task, shared_task

from foundation.jobs import TRANSIENT
from foundation.outbox.relay import prune_delivered, relay_due


@shared_task(
    name="outbox.relay",
    bind=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def relay(self: Task[..., dict[str, int]], queue: str | None = None) -> dict[str, int]:
    """Deliver the due side effects of ``queue``'s kinds (all kinds when None)."""
    del self
    result = relay_due(queue=queue)
    return {"delivered": result.delivered, "retried": result.retried, "parked": result.parked}


@shared_task(name="outbox.prune", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def prune() -> int:
    """Delivered rows are kept a while for the record, then deleted."""
    return prune_delivered()
