"""Teams, workloads, exception requests and the grants they produce."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.urls import reverse

from exceptions.choices import (
    DataClass,
    Environment,
    GrantStatus,
    IdentityKind,
    Protocol,
    Purpose,
    RequestStatus,
    RevokeKind,
    RiskTier,
    Sensitivity,
    WorkloadRole,
)
from exceptions.validators import is_wildcard


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    members: models.ManyToManyField[Any, Any] = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_team_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class Workload(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="workloads")
    name = models.CharField(max_length=100)
    identity = models.CharField(max_length=300, unique=True, help_text="Canonical identity (SPIFFE ID, ARN, e-mail).")
    identity_kind = models.CharField(max_length=16, choices=IdentityKind.choices)
    namespace = models.CharField(max_length=63, blank=True)
    service_account = models.CharField(max_length=253, blank=True)
    environment = models.CharField(max_length=16, choices=Environment.choices)
    role = models.CharField(max_length=16, choices=WorkloadRole.choices, default=WorkloadRole.SERVICE)
    sensitivity = models.CharField(max_length=16, choices=Sensitivity.choices, default=Sensitivity.MODERATE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "environment", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "environment", "name"], name="unique_workload_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment})"


class ExceptionRequest(models.Model):
    workload = models.ForeignKey(Workload, on_delete=models.PROTECT, related_name="requests")
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exception_requests")
    # Set when an integration filed the request for the requester (issue 10): it may follow what it filed.
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="filed_requests"
    )
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    data_class = models.CharField(max_length=16, choices=DataClass.choices)
    justification = models.TextField()
    ticket_ref = models.CharField(max_length=100, blank=True)
    lifetime = models.DurationField()
    desired_start = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=RequestStatus.choices, default=RequestStatus.PENDING, db_index=True
    )
    # Bumped when the requester resubmits after "request changes": approvals of
    # an earlier revision no longer count (see approvals.Decision).
    revision = models.PositiveIntegerField(default=1)
    risk_tier = models.CharField(max_length=8, choices=RiskTier.choices)
    risk_reasons = models.JSONField(default=list)
    renews = models.ForeignKey("Grant", null=True, blank=True, on_delete=models.SET_NULL, related_name="renewals")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="decided_requests"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When it first went to approvers: creation, or a draft's submission (time to approve starts here).
    submitted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # Incremental sync (updated_since, cursor over updated_at) for integrations.
        indexes = [models.Index(fields=["updated_at", "id"], name="request_updated_idx")]

    def __str__(self) -> str:
        return f"Request #{self.pk} for {self.workload}"

    def get_absolute_url(self) -> str:
        return reverse("request-detail", args=[self.pk])

    def grant_window(self, now: datetime, *, not_before: datetime | None = None) -> tuple[datetime, datetime]:
        """When grants issued at ``now`` would start and end: the one rule for it.

        ``not_before`` is the go-live time a change window sets; the lifetime
        runs from the start, so a grant that waits for its window loses nothing.
        """
        valid_from = max(now, self.desired_start or now, not_before or now)
        return valid_from, valid_from + self.lifetime

    def snapshot(self) -> dict[str, object]:
        return {
            "status": self.status,
            "workload": self.workload.identity,
            "purpose": self.purpose,
            "data_class": self.data_class,
            "lifetime_hours": int(self.lifetime.total_seconds() // 3600),
            "desired_start": self.desired_start,
            "risk_tier": self.risk_tier,
            "ticket_ref": self.ticket_ref,
        }


class RequestDestination(models.Model):
    request = models.ForeignKey(ExceptionRequest, on_delete=models.CASCADE, related_name="destinations")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=3, choices=Protocol.choices, default=Protocol.TCP)
    tls_required = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "host", "port", "protocol"], name="unique_request_destination")
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.protocol}"

    def as_dict(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "protocol": self.protocol, "tls_required": self.tls_required}


class Grant(models.Model):
    """One approved destination for one identity, for a bounded time."""

    request = models.ForeignKey(ExceptionRequest, on_delete=models.PROTECT, related_name="grants")
    workload = models.ForeignKey(Workload, on_delete=models.PROTECT, related_name="grants")
    identity = models.CharField(max_length=300, db_index=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=3, choices=Protocol.choices, default=Protocol.TCP)
    tls_required = models.BooleanField(default=True)
    # A provider service ("aws:S3/eu-west-1") when the destination has no usable name:
    # approved as the service; its addresses come from the latest ProviderRangeSet.
    service = models.CharField(max_length=200, blank=True, default="")
    valid_from = models.DateTimeField()
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=GrantStatus.choices)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="revoked_grants"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.TextField(blank=True)
    revoke_kind = models.CharField(max_length=20, choices=RevokeKind.choices, blank=True, default="")
    do_not_renew = models.BooleanField(default=False, help_text="The owners let it lapse: no expiry reminders.")
    breakglass = models.BooleanField(default=False, help_text="Opened by break-glass: no quorum, window or freeze.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["expires_at", "id"]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="grant_status_expiry"),
            models.Index(fields=["status", "valid_from"], name="grant_status_start"),
            # The banner on every page asks this; break-glass grants are few.
            models.Index(
                fields=["expires_at"],
                condition=models.Q(breakglass=True, status="active"),
                name="grant_breakglass_active",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("valid_from")), name="grant_expiry_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.identity} → {self.host}:{self.port}/{self.protocol}"

    def get_absolute_url(self) -> str:
        return reverse("grant-detail", args=[self.pk])

    @property
    def wildcard(self) -> bool:
        return is_wildcard(self.host)

    def is_active(self, *, at: datetime) -> bool:
        return self.status == GrantStatus.ACTIVE and self.valid_from <= at < self.expires_at

    def remaining(self, *, at: datetime) -> timedelta:
        return max(self.expires_at - at, timedelta(0))

    def snapshot(self) -> dict[str, object]:
        return {
            "status": self.status,
            "identity": self.identity,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "valid_from": self.valid_from,
            "expires_at": self.expires_at,
            "request": self.request_id,
        }


class BundlePublication(models.Model):
    """One attempt to publish the policy bundle to git."""

    class Status(models.TextChoices):
        PUBLISHED = "published", "Published"
        UNCHANGED = "unchanged", "Unchanged (no commit)"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices)
    revision = models.CharField(max_length=64, blank=True)
    commit = models.CharField(max_length=64, blank=True)
    trigger = models.CharField(max_length=100)
    grant_count = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.status} {self.revision or '-'} ({self.trigger})"


# The audit action recorded each time the bundle endpoint starts serving a revision
# (exceptions/services/artifacts.py); ingestion reads it to tell revisions the portal made.
BUNDLE_SERVED_ACTION = "bundle.served"


class BundleArtifact(models.Model):
    """The OPA bundle archive (tar.gz with its ``.signatures.json``) of one revision.

    Stored once by the publish that compiled it, before its git push: what OPA
    agents poll is these bytes, read by any web process, never compiled per poll.
    """

    revision = models.CharField(max_length=64, unique=True)
    archive = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.revision} ({self.size:,} bytes)"


class ServedBundle(models.Model):
    """The one row naming the artifact the bundle endpoint serves; a publish moves it.

    A poll reads this row by its primary key and nothing else unless it needs the bytes.
    """

    ONE = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=ONE)
    artifact = models.ForeignKey(BundleArtifact, on_delete=models.PROTECT, related_name="+")
    revision = models.CharField(max_length=64)
    sha256 = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="servedbundle_single_row")]

    def __str__(self) -> str:
        return self.revision


class PolicyDrift(models.Model):
    """Changes on the policy branch that the portal did not make, found by the publisher before it
    restored the signed state (``exceptions/services/policy_drift.py``)."""

    since_commit = models.CharField(max_length=64, blank=True)  # the last commit the publisher made or examined
    head_commit = models.CharField(max_length=64, blank=True)  # the head it found ("" when the branch was gone)
    paths = models.JSONField(default=list)  # [{"path", "change", "restored"}]
    commits = models.JSONField(default=list)  # [{"sha", "author", "subject"}], newest first
    rewritten = models.BooleanField(default=False)  # since_commit is no longer in the branch's history
    detected_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            # One record per drift: a publish retried after recording it does not record it again.
            models.UniqueConstraint(fields=["since_commit", "head_commit"], name="policy_drift_once")
        ]

    def __str__(self) -> str:
        return f"drift at {self.head_commit[:12] or '(no branch)'}: {len(self.paths)} paths"


class IntegrationToken(models.Model):
    """A scoped API key for a ticketing tool. It acts as ``user``, limited to ``scopes``.

    Only a SHA-256 of the key is stored; the key is shown once, when created.
    """

    # How foundation.actors tells this token from other DRF ``auth`` values without importing the core.
    is_integration_token: ClassVar[bool] = True

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="integration_tokens")
    prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, *, at: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or at < self.expires_at)


class ExpiryReminder(models.Model):
    """A reminder threshold a grant has reached: at most one row per grant and threshold.

    A grant first seen inside several thresholds (filed for a day, or the job
    was down for a week) gets one mail, for the most urgent of them; the
    others are recorded as passed, ``superseded_by`` that threshold, with no
    recipients, so no later run sends them.
    """

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="reminders")
    days_before = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField(help_text="When the threshold was handled (mailed, or recorded as passed).")
    recipients = models.JSONField(default=list)
    superseded_by = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The more urgent threshold mailed instead; empty when this one was mailed."
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["grant", "days_before"], name="one_reminder_per_threshold")]

    def __str__(self) -> str:
        passed = f" (passed, superseded by {self.superseded_by} days)" if self.superseded_by is not None else ""
        return f"grant {self.grant_id}: {self.days_before} days before{passed}"


class ProviderRangeSet(models.Model):
    """One version of a provider's published ranges (AWS ip-ranges.json, Google cloud.json).

    Grants name a provider service (``S3/eu-west-1``); the bundle takes the
    numbers from the newest version. A new version republishes without a new
    approval, and its arrival is audited.
    """

    class Provider(models.TextChoices):
        AWS = "aws", "AWS (ip-ranges.json)"
        GOOGLE = "google", "Google Cloud (cloud.json)"

    provider = models.CharField(max_length=16, choices=Provider.choices)
    source = models.CharField(max_length=500)
    sync_token = models.CharField(max_length=64)
    published = models.CharField(max_length=64, help_text="The file's own creation date, as written.")
    services = models.JSONField(help_text="Service key (e.g. S3/eu-west-1) to its CIDRs.")
    fetched_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-fetched_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["provider", "sync_token"], name="one_range_set_per_token")]

    def __str__(self) -> str:
        return f"{self.provider} ranges {self.sync_token} ({self.published})"


class RequestComment(models.Model):
    """A remark on a request by someone who can see it (a person or an integration on the ticket)."""

    request = models.ForeignKey(ExceptionRequest, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"comment {self.pk} on request {self.request_id}"


class IdempotencyRecord(models.Model):
    """The outcome of one POST sent with an ``Idempotency-Key``, replayed for the same owner and key.

    ``owner`` is ``token:<id>`` or ``user:<id>`` (keys are per token); ``status_code`` is
    null while the first call is still running."""

    owner = models.CharField(max_length=40)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True)
    location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="one_outcome_per_idempotency_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.owner} {self.key}"
