"""Who may see and manage webhooks: portal administrators."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from egress_portal.webhooks.models import WebhookDelivery, WebhookSubscription
from egress_portal.webhooks.services import ADMINS_ONLY
from exceptions.access import roles_for


def require_webhook_admin(user: Any) -> None:
    if not roles_for(user).is_admin:
        raise PermissionDenied(ADMINS_ONLY)


def visible_subscriptions(user: Any) -> QuerySet[WebhookSubscription]:
    require_webhook_admin(user)
    return WebhookSubscription.objects.all()


def access_subscription(user: Any, pk: int | str) -> WebhookSubscription:
    subscription = visible_subscriptions(user).filter(pk=pk).first()
    if subscription is None:
        raise Http404("No such webhook subscription.")
    return subscription


def access_delivery(user: Any, pk: int | str) -> WebhookDelivery:
    require_webhook_admin(user)
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=pk).first()
    if delivery is None:
        raise Http404("No such webhook delivery.")
    return delivery
