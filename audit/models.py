"""Append-only, hash-chained audit events."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ActorKind(models.TextChoices):
    USER = "user", "User"
    TOKEN = "token", "API token"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    """One state change. ``hash`` = SHA-256(prev_hash + canonical JSON of the event).

    Rows are never updated or deleted: on PostgreSQL a trigger refuses both.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # How a person acted (session or token, last MFA, break-glass); hashed when present.
    context = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # HMAC-SHA256 of (seq, hash) with the audit key (audit/sealing.py), which the database never holds.
    seal = models.CharField(max_length=64, blank=True, default="")
    seal_key_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["seq"]
        # The action index also lets the audit page list the actions it holds with
        # one probe per distinct value (selectors.event_choices), not a scan of the chain.
        indexes = [models.Index(fields=["object_type", "object_id", "seq"]), models.Index(fields=["action"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"


class AuditChainHead(models.Model):
    """The single row every writer locks, so concurrent writers never fork the chain.

    It also remembers the last sequence number and hash, so removing the newest
    events is detected too.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    # HMAC of (last_seq, last_hash) with the audit key: rolling the head back after removing
    # the newest events needs a seal the key holder never wrote.
    seal = models.CharField(max_length=64, blank=True, default="")
    seal_key_id = models.CharField(max_length=16, blank=True, default="")

    def __str__(self) -> str:
        return f"audit head #{self.last_seq}"


class AuditCheckpoint(models.Model):
    """A signed (sequence number, head hash, time) written to the policy repository.

    The row is the portal's own index of what it pushed; the proof is the file in
    git (``path`` at ``commit``), which someone rewriting this database cannot reach.
    """

    seq = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=100)
    signature = models.TextField(help_text="Compact JWS over the checkpoint's claims.")
    path = models.CharField(max_length=255)
    commit = models.CharField(max_length=40)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"audit checkpoint #{self.seq}"
