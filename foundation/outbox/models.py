"""Outbox rows: one side effect each (a mail, a bundle publish, a webhook, a broadcast)."""

from __future__ import annotations

from django.db import models


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    PARKED = "parked", "Parked"


class OutboxMessage(models.Model):
    """A side effect waiting for the relay, written in the transaction of the change that causes it.

    ``idempotency_key`` is unique: enqueueing the same effect twice keeps one row, and a
    handler passes the key on so a repeated delivery is harmless.
    """

    kind = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    idempotency_key = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Bumped each time a coalescing row is re-armed; a delivery that started
    # before the bump does not mark the newer request delivered.
    revision = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField(help_text="Not delivered before this time (the next try).")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "available_at", "id"], name="outbox_due_idx"),
            models.Index(fields=["kind", "status"], name="outbox_kind_status_idx"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"


class OutboxOutcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    RETRIED = "retried", "Failed, will retry"
    PARKED = "parked", "Failed, parked"


class OutboxTally(models.Model):
    """How many deliveries of each kind ended how, since the portal began.

    Delivered rows are pruned after a while, so counting rows would go
    backwards; these counters only grow (Prometheus counters read them).
    """

    kind = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=OutboxOutcome.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "outcome"], name="outbox_tally_kind_outcome")]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome}: {self.count}"
