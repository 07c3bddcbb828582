"""Managing webhook subscriptions and redelivering: admins only, each change audited."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audit.services import record_event
from exceptions.access import roles_for
from foundation.actors import user_of
from foundation.outbox.services import enqueue
from webhooks.events import EVENTS, KIND, outbox_key
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription, validate_secret
from webhooks.targets import TargetRefused, check_url

ADMINS_ONLY = "Only a portal administrator may manage webhooks."


def _require_admin(actor: Any) -> None:
    if not roles_for(user_of(actor)).is_admin:
        raise PermissionDenied(ADMINS_ONLY)


def _check(*, url: str, events: Sequence[str], secret: str | None = None) -> None:
    errors: dict[str, list[str]] = {}
    if secret:
        try:
            validate_secret(secret)
        except ValidationError as exc:
            errors["secret"] = exc.messages
    try:
        check_url(url)
    except TargetRefused as exc:
        errors["url"] = [str(exc)]
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        errors["events"] = [f"Unknown event(s) {', '.join(unknown)}; choose from {', '.join(EVENTS)}."]
    elif not events:
        errors["events"] = ["Choose at least one event."]
    if errors:
        raise ValidationError(errors)


def create_subscription(
    *, actor: Any, url: str, events: Sequence[str], secret: str = "", description: str = "", active: bool = True
) -> WebhookSubscription:
    """Create a subscription; without a secret, a random one is made (show it to the admin once)."""
    _require_admin(actor)
    _check(url=url, events=events, secret=secret)
    with transaction.atomic():
        subscription = WebhookSubscription.objects.create(
            url=url,
            events=sorted(set(events)),
            secret=secret or f"whsec_{secrets.token_urlsafe(32)}",
            description=description.strip(),
            active=active,
            created_by=user_of(actor),
        )
        record_event(actor=actor, action="webhook.created", obj=subscription, after=subscription.snapshot())
    return subscription


def update_subscription(*, actor: Any, subscription: WebhookSubscription, **changes: Any) -> WebhookSubscription:
    """Change url, events, secret, description or active."""
    _require_admin(actor)
    allowed = {"url", "events", "secret", "description", "active"}
    if set(changes) - allowed:
        raise ValueError(f"Unknown subscription fields {sorted(set(changes) - allowed)}")
    with transaction.atomic():
        locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        before = locked.snapshot()
        _check(
            url=changes.get("url", locked.url),
            events=changes.get("events", locked.events),
            secret=changes.get("secret"),
        )
        for name, value in changes.items():
            setattr(locked, name, sorted(set(value)) if name == "events" else value)
        locked.save()
        after = locked.snapshot() | ({"secret": "rotated"} if "secret" in changes else {})
        record_event(actor=actor, action="webhook.updated", obj=locked, before=before, after=after)
    return locked


def delete_subscription(*, actor: Any, subscription: WebhookSubscription) -> None:
    _require_admin(actor)
    with transaction.atomic():
        locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        record_event(actor=actor, action="webhook.deleted", obj=locked, before=locked.snapshot())
        locked.delete()


def redeliver(*, actor: Any, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again (after the endpoint was fixed): a new outbox row, same body and event id."""
    _require_admin(actor)
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        before = {"status": locked.status, "attempts": locked.attempts}
        locked.status = DeliveryStatus.PENDING
        locked.save(update_fields=["status"])
        enqueue(kind=KIND, payload={"delivery": locked.pk}, idempotency_key=outbox_key(locked.pk, locked.attempts + 1))
        record_event(
            actor=actor,
            action="webhook.redelivered",
            obj=locked.subscription,
            before=before,
            after={"delivery": locked.pk, "event": locked.event, "status": locked.status},
        )
    return locked


def reencrypt_webhook_secrets() -> tuple[str, int]:
    """Seal every subscription's secret again under the current key, in the caller's transaction.

    The field opens a secret with any configured key and seals it with the current one on save.
    """
    count = 0
    for subscription in WebhookSubscription.objects.select_for_update().order_by("pk"):
        subscription.save(update_fields=["secret"])
        count += 1
    return "webhook_subscriptions", count
