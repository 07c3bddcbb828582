"""Outbox handlers of this app (registered by dotted path in ``OUTBOX_HANDLERS``)."""

from __future__ import annotations

from bundle.policy_repository import PublishError
from exceptions.services.publications import publish_bundle
from foundation.outbox.errors import DeliveryError
from foundation.outbox.models import OutboxMessage


def deliver_publish(message: OutboxMessage) -> None:
    """A ``bundle.publish`` row: publish the whole current state. A failed push is worth another
    try (the next publish carries everything), so it is transient."""
    try:
        publish_bundle(trigger=str(message.payload.get("trigger", "outbox")))
    except PublishError as exc:
        raise DeliveryError(str(exc)) from exc
