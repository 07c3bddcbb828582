"""The relay task: beat starts it every few seconds per queue; a grant change may nudge it sooner."""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from django.db import OperationalError

from egress_portal.outbox.relay import prune_delivered, relay_due

logger = logging.getLogger(__name__)


@shared_task(
    name="outbox.relay",
    bind=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def relay(self: Task[..., dict[str, int]], queue: str | None = None) -> dict[str, int]:
    """Deliver the due side effects of ``queue``'s kinds (all kinds when None)."""
    del self
    result = relay_due(queue=queue)
    return {"delivered": result.delivered, "retried": result.retried, "parked": result.parked}


# After a failed nudge this process stops nudging for a while: during a broker outage
# only one change per interval pays the connection timeout, the rest commit at full speed.
NUDGE_PAUSE_SECONDS = 30.0
_nudges_paused_until = 0.0


def nudge(queue: str, *, countdown: float = 0) -> None:
    """Ask for a relay run soon. Best effort: the beat schedule delivers anyway, so a broker
    outage here must never fail the change that asked (and slows at most one change per pause)."""
    global _nudges_paused_until
    if time.monotonic() < _nudges_paused_until:
        return
    try:
        relay.apply_async(kwargs={"queue": queue}, queue=queue, countdown=countdown, retry=False)
    except Exception as exc:  # the periodic relay is the guarantee, this is only a shortcut
        _nudges_paused_until = time.monotonic() + NUDGE_PAUSE_SECONDS
        logger.info("relay nudge not sent (%s); the periodic relay will deliver", exc)


@shared_task(name="outbox.prune", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def prune() -> int:
    """Delivered rows are kept a while for the record, then deleted."""
    return prune_delivered()
