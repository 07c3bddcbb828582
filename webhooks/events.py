"""Webhook deliveries for the events the portal announces (``exceptions.events``).

``queue_deliveries`` runs inside the causing service's transaction: it writes one delivery row
per listening subscription and one outbox row per delivery, so the event is sent
if and only if the change commits (issue 7's relay delivers ``webhook`` rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from exceptions.events import EVENTS
from foundation.outbox.services import enqueue_many
from webhooks.models import WebhookDelivery, WebhookSubscription

KIND = "webhook"
_NAMESPACE = uuid.UUID("6f1c1f0e-2d4b-4c39-9a55-0e7d8c2b9a10")


def outbox_key(delivery_id: int, attempt_round: int = 0) -> str:
    return f"webhook:{delivery_id}:{attempt_round}"


def queue_deliveries(event: str, occurrences: Iterable[tuple[str, Mapping[str, Any]]], now: datetime | None) -> int:
    """Queue ``event`` for each (occurrence key, data); the key (e.g. ``grant:7:expired``) makes the
    event id stable, so a receiver can drop a duplicate. Returns the number of deliveries queued.

    The sink of ``exceptions.events.emit``, registered in ``WebhooksConfig.ready``."""
    listeners = [s for s in WebhookSubscription.objects.filter(active=True).order_by("id") if event in s.events]
    if not listeners:
        return 0
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("emit() runs inside the transaction of the change that causes the event.")
    created_at = (now or timezone.now()).isoformat()
    deliveries = []
    for key, data in occurrences:
        event_id = uuid.uuid5(_NAMESPACE, f"{event}:{key}")
        body = {"id": str(event_id), "type": event, "created_at": created_at, "data": dict(data)}
        deliveries += [
            WebhookDelivery(subscription=subscription, event_id=event_id, event=event, body=body)
            for subscription in listeners
        ]
    # Two inserts whatever the count: a batch job expiring thousands of grants emits in one go.
    created = WebhookDelivery.objects.bulk_create(deliveries)
    enqueue_many(kind=KIND, items=[(outbox_key(d.pk), {"delivery": d.pk}) for d in created])
    return len(created)


__all__ = ["EVENTS", "KIND", "outbox_key", "queue_deliveries"]
