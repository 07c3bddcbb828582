"""Who may see and manage webhooks: portal administrators."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from exceptions.access import roles_for
from webhooks.models import WebhookDelivery, WebhookSubscription
from webhooks.services import ADMINS_ONLY


def require_webhook_admin(user: Any) -> None:
    if not roles_for(user).is_admin:
        raise PermissionDenied(ADMINS_ONLY)


def visible_subscriptions(user: Any) -> QuerySet[WebhookSubscription]:
    require_webhook_admin(user)
    return WebhookSubscription.objects.all()


def access_subscription(user: Any, pk: int | str) -> WebhookSubscription:
    # Like any object the caller may not see: a 404, whether or not it exists.
    subscription = WebhookSubscription.objects.filter(pk=pk).first() if roles_for(user).is_admin else None
    if subscription is None:
        raise Http404("No such webhook subscription.")
    return subscription


def access_delivery(user: Any, pk: int | str) -> WebhookDelivery:
    deliveries = WebhookDelivery.objects.select_related("subscription")
    delivery = deliveries.filter(pk=pk).first() if roles_for(user).is_admin else None
    if delivery is None:
        raise Http404("No such webhook delivery.")
    return delivery
