"""Asking for a bundle publish: an outbox row in the caller's transaction, coalesced.

Every grant change re-arms the one pending ``bundle.publish`` row, so a burst
of changes (an approval of ten destinations, an expiry batch) makes one
publish a couple of seconds later, and a change that commits while a publish
is running makes one more after it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from foundation.outbox.services import enqueue_coalesced, nudge_relay

PUBLISH = "bundle.publish"
PUBLISH_KEY = "bundle.publish:pending"


def queue_publish(*, trigger: str) -> None:
    """Ask for a publish of the whole state; the caller holds the transaction of the grant change."""
    if not settings.EGRESS_AUTO_PUBLISH:
        return
    enqueue_coalesced(
        kind=PUBLISH,
        payload={"trigger": trigger},
        idempotency_key=PUBLISH_KEY,
        delay_seconds=settings.BUNDLE_PUBLISH_DELAY_SECONDS,
    )
    if settings.OUTBOX_NUDGE:
        queue = settings.OUTBOX_KIND_QUEUES.get(PUBLISH, settings.CELERY_TASK_DEFAULT_QUEUE)
        transaction.on_commit(lambda: nudge_relay(queue, countdown=settings.BUNDLE_PUBLISH_DELAY_SECONDS))
