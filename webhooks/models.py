"""Webhook subscriptions and the log of their deliveries."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from foundation.encryption import EncryptedTextField

# One rule for a secret an admin chooses, on the page, in the API and in the service:
# a short one could be guessed offline from one signed delivery.
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 200


def validate_secret(value: str) -> None:
    if len(value) < SECRET_MIN_LENGTH:
        raise ValidationError(
            f"The secret must be at least {SECRET_MIN_LENGTH} characters (it has {len(value)}); "
            "leave it empty to have one generated.",
            code="secret_too_short",
        )


class WebhookSubscription(models.Model):
    """An endpoint told of the events it names. The secret signs every delivery; signing
    needs it back, so it is sealed with EGRESS_SECRETS_KEY rather than hashed (shown once,
    on creation)."""

    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret = EncryptedTextField()
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    def snapshot(self) -> dict[str, object]:
        return {"url": self.url, "events": self.events, "active": self.active, "description": self.description}


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (will retry)"
    REFUSED = "refused", "Refused (not retried)"


class WebhookDelivery(models.Model):
    """One event for one subscription; its body is fixed when the event happens."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(db_index=True)
    event = models.CharField(max_length=64)
    body = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["subscription", "-id"], name="webhook_delivery_sub_idx")]

    def __str__(self) -> str:
        return f"{self.event} → {self.subscription_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what the endpoint answered and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id}"
