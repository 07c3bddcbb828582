"""REST endpoints for webhook subscriptions and their deliveries (admins, scope ``webhooks:manage``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from exceptions.api.base import IntegrationView
from exceptions.api.pagination import BoundedLimitOffsetPagination
from exceptions.api.serializers import ClosedSerializer
from foundation.actors import actor_for
from webhooks import services
from webhooks.access import access_delivery, access_subscription, visible_subscriptions
from webhooks.events import EVENTS
from webhooks.models import (
    SECRET_MAX_LENGTH,
    SECRET_MIN_LENGTH,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
    validate_secret,
)

SCOPE = "webhooks:manage"
ALL_METHODS = dict.fromkeys(("GET", "POST", "PATCH", "DELETE"), SCOPE)


class SubscriptionInput(ClosedSerializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=list(EVENTS)), allow_empty=False)
    secret = serializers.CharField(
        required=False,
        max_length=SECRET_MAX_LENGTH,
        validators=[validate_secret],
        help_text=f"At least {SECRET_MIN_LENGTH} characters; generated when left out; shown once.",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    active = serializers.BooleanField(required=False, default=True)


class SubscriptionPatch(SubscriptionInput):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class SubscriptionSerializer(serializers.ModelSerializer[WebhookSubscription]):
    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "active", "description", "created_at", "updated_at"]


class CreatedSubscriptionSerializer(SubscriptionSerializer):
    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]


class AttemptSerializer(serializers.ModelSerializer[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt
        fields = ["at", "status_code", "latency_ms", "error"]


class DeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    attempt_log = AttemptSerializer(many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "subscription",
            "event",
            "event_id",
            "status",
            "attempts",
            "last_status_code",
            "last_latency_ms",
            "last_error",
            "created_at",
            "delivered_at",
            "body",
            "attempt_log",
        ]


class SubscriptionList(IntegrationView):
    required_scopes = ALL_METHODS
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(responses=SubscriptionSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(visible_subscriptions(request.user).order_by("id"), request, view=self)
        return paginator.get_paginated_response(SubscriptionSerializer(page, many=True).data)

    @extend_schema(request=SubscriptionInput, responses={201: CreatedSubscriptionSerializer})
    def post(self, request: Request) -> Response:
        payload = SubscriptionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        created = services.create_subscription(actor=actor_for(request), **payload.validated_data)
        return Response(
            CreatedSubscriptionSerializer(created).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/webhooks/{created.pk}/"},
        )


class SubscriptionDetail(IntegrationView):
    required_scopes = ALL_METHODS

    @extend_schema(responses=SubscriptionSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(SubscriptionSerializer(access_subscription(request.user, pk)).data)

    @extend_schema(request=SubscriptionPatch, responses=SubscriptionSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        subscription = access_subscription(request.user, pk)
        payload = SubscriptionPatch(data=request.data)
        payload.is_valid(raise_exception=True)
        changes = {k: v for k, v in payload.validated_data.items() if k in request.data}
        changed = services.update_subscription(actor=actor_for(request), subscription=subscription, **changes)
        return Response(SubscriptionSerializer(changed).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.delete_subscription(actor=actor_for(request), subscription=access_subscription(request.user, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryList(IntegrationView):
    required_scopes = ALL_METHODS
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(responses=DeliverySerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        subscription = access_subscription(request.user, pk)
        paginator = BoundedLimitOffsetPagination()
        deliveries = subscription.deliveries.prefetch_related("attempt_log").order_by("-id")
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class Redeliver(IntegrationView):
    required_scopes = ALL_METHODS

    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(self, request: Request, pk: int) -> Response:
        delivery = services.redeliver(actor=actor_for(request), delivery=access_delivery(request.user, pk))
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
