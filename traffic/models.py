"""Egress gateways (products with an owner, an SLO and a contract) and what they observe."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from exceptions.choices import Environment
from exceptions.models import Grant, Team


class GatewayKind(models.TextChoices):
    ISTIO = "istio", "Istio egress gateway"
    NAT = "nat", "NAT gateway"
    PROXY = "proxy", "Forward proxy"
    CILIUM = "cilium", "Cilium node"


# Observers on the workload's own node: traffic they report did not pass a registered egress point.
NODE_OBSERVER_KINDS = frozenset({GatewayKind.CILIUM})


class EgressGateway(models.Model):
    """A registered egress point. It reports decisions and flows with its ingestion token,
    of which only a SHA-256 is stored."""

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=GatewayKind.choices)
    environment = models.CharField(max_length=16, choices=Environment.choices)
    owner_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="gateways")
    contact = models.CharField(max_length=200, blank=True, help_text="Where to ask: a channel, an e-mail, a rota.")
    slo = models.TextField(blank=True, help_text="What the owners promise: availability, latency, support hours.")
    contract = models.TextField(
        blank=True,
        help_text="What traffic it carries, which headers it preserves, how to request changes.",
    )
    token_prefix = models.CharField(max_length=12, unique=True)
    token_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_record_at = models.DateTimeField(null=True, blank=True)
    # What it can see, bound at creation (traffic.scope decides): records about identities
    # outside it are refused. Environments are required (``environment`` is the first); teams
    # (slugs), namespaces and identity prefixes, when given, narrow it further.
    scope_environments = models.JSONField(default=list)
    scope_teams = models.JSONField(default=list, blank=True)
    scope_namespaces = models.JSONField(default=list, blank=True)
    scope_identity_prefixes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["environment", "name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("gateway-detail", args=[self.name])


class IngestBatch(models.Model):
    """One POST from a gateway: what was kept, ignored, repeated and rejected (the ingest rate)."""

    gateway = models.ForeignKey(EgressGateway, on_delete=models.CASCADE, related_name="batches")
    source = models.CharField(max_length=8)  # "opa" or "flows"
    received_at = models.DateTimeField(db_index=True)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # Of the rejected: about identities outside the gateway's scope, and OPA events naming a
    # bundle revision the portal never published (both shown on the operations page).
    out_of_scope = models.PositiveIntegerField(default=0)
    unknown_revision = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["gateway", "received_at"], name="ingest_gateway_time")]

    def __str__(self) -> str:
        return f"{self.source} batch from {self.gateway_id} at {self.received_at:%Y-%m-%d %H:%M:%S}"


class SeenRecord(models.Model):
    """The digest of every record kept (decision_id, or a hash of a flow record), so a gateway
    that retries a batch does not count it twice. Pruned after ``EGRESS_INGEST_DEDUP_DAYS``."""

    digest = models.BigIntegerField(primary_key=True)
    seen_on = models.DateField(db_index=True)

    def __str__(self) -> str:
        return f"{self.digest:x}"


class GrantUsage(models.Model):
    """Allowed traffic through one grant on one day (UTC): one row, however many events."""

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    count = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["grant", "day"], name="one_usage_row_per_grant_day")]
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"grant {self.grant_id} on {self.day}: {self.count}"


class DeniedTraffic(models.Model):
    """Denied attempts of one identity to one host and port on one day: the on-ramp's data."""

    identity = models.CharField(max_length=300)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    day = models.DateField()
    count = models.BigIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["identity", "host", "port", "day"], name="one_denied_row_per_day")
        ]
        indexes = [models.Index(fields=["identity", "day"], name="denied_identity_day")]

    def __str__(self) -> str:
        return f"{self.identity} -> {self.host}:{self.port} on {self.day}: {self.count}"


class ObservedFlow(models.Model):
    """One distinct flow (identity to host and port) on one day (UTC), however many records and
    reporters had it: the share of traffic through registered egress points counts flows, so a
    flow a node observer and an egress gateway both reported counts once."""

    identity = models.CharField(max_length=300)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    day = models.DateField()
    # Some registered egress point (a gateway, NAT or proxy, not only a node observer) saw it.
    via_egress_point = models.BooleanField()

    class Meta:
        constraints = [
            # Day first: the daily snapshot reads one day.
            models.UniqueConstraint(fields=["day", "identity", "host", "port"], name="one_observed_flow_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.identity} -> {self.host}:{self.port} on {self.day}"


class IdentityFeed(models.Model):
    """An identity one gateway reports traffic for, and since when (one row per gateway and
    identity): stale revocation acts only on identities a gateway whose scope covers them has
    reported on for the whole window, so a missing feed never revokes and a gateway cannot make
    another environment's or team's feed look fresh."""

    identity = models.CharField(max_length=300)
    gateway = models.ForeignKey(EgressGateway, on_delete=models.CASCADE, related_name="identities")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["identity", "gateway"], name="one_feed_per_identity_gateway")]

    def __str__(self) -> str:
        return f"{self.identity} via {self.gateway_id}"


class StaleNotice(models.Model):
    """A grant that saw no traffic for its tier's window: noticed, then revoked after the grace
    period unless someone keeps it (once, with a reason)."""

    class Status(models.TextChoices):
        NOTICED = "noticed", "Noticed"
        KEPT = "kept", "Kept"
        CLEARED = "cleared", "Traffic resumed"
        REVOKED = "revoked", "Revoked"

    grant = models.OneToOneField(Grant, on_delete=models.CASCADE, related_name="stale_notice")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NOTICED)
    noticed_at = models.DateTimeField()
    revoke_after = models.DateTimeField()
    kept_at = models.DateTimeField(null=True, blank=True)
    kept_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    keep_reason = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "revoke_after"], name="stale_due")]

    def __str__(self) -> str:
        return f"stale notice for grant {self.grant_id} ({self.status})"


class JobState(models.Model):
    """The last outcome of each Celery task, for the operations page (written by the worker)."""

    task = models.CharField(max_length=200, primary_key=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.task


class BundleRevisionSeen(models.Model):
    """When an engine first reported a decision made with a bundle revision (the ``bundles``
    field of OPA's decision logs): the end of the time to policy update."""

    revision = models.CharField(max_length=64, primary_key=True)
    first_seen = models.DateTimeField()
    gateway = models.ForeignKey(EgressGateway, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"{self.revision} first seen {self.first_seen:%Y-%m-%d %H:%M:%S}"
