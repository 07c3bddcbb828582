"""Approver groups, decisions on requests, change windows and freezes."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models

from exceptions.models import ExceptionRequest, Team


class ApproverGroup(models.Model):
    name = models.CharField(max_length=100, unique=True)
    teams = models.ManyToManyField(Team, related_name="approver_groups", help_text="Teams whose requests it decides.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="approver_groups", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DecisionKind(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    REQUEST_CHANGES = "request_changes", "Requested changes"


class Decision(models.Model):
    """One approve, reject or request-changes by one person.

    The request's approval state is derived from these rows and the policy
    rule; it is never stored on the request. ``request_revision`` is the
    request's revision when decided: a resubmission starts a new revision, so
    approvals given before it no longer count.
    """

    request = models.ForeignKey(ExceptionRequest, on_delete=models.CASCADE, related_name="decisions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    kind = models.CharField(max_length=16, choices=DecisionKind.choices)
    counts_for = models.CharField(
        max_length=100, blank=True, help_text="The required group this approval counts for (owning-team or a name)."
    )
    reason = models.TextField(blank=True)
    rule = models.CharField(max_length=100)
    policy_revision = models.CharField(max_length=64)
    request_revision = models.PositiveIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["request", "request_revision"], name="decision_request_revision")]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "request_revision", "actor"],
                condition=models.Q(kind="approve"),
                name="one_approval_per_person_per_revision",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.request_id} by {self.actor_id}"


class ChangeWindow(models.Model):
    """When changes to some environments may go live: an RFC 5545 RRULE in a time zone."""

    name = models.CharField(max_length=100, unique=True)
    environments = models.JSONField(default=list, help_text='Environments it opens, e.g. ["prod"].')
    rrule = models.CharField(max_length=300, help_text="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=TU")
    first_start = models.DateTimeField(
        help_text="Local wall-clock time of the first occurrence, in time_zone (stored as UTC)."
    )
    duration = models.DurationField()
    time_zone = models.CharField(max_length=64, help_text="IANA name, e.g. Europe/Berlin.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def local_dtstart(self) -> datetime:
        """The first occurrence as a wall-clock time in the window's zone (the RRULE's DTSTART)."""
        return self.first_start.astimezone(self.zone)

    def describe(self) -> str:
        start = self.local_dtstart()
        hours = self.duration / timedelta(hours=1)
        return f"{self.rrule} at {start:%H:%M} {self.time_zone} for {hours:g} h"


class Freeze(models.Model):
    """A period when nothing goes live in the named environments; approvals still happen."""

    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    environments = models.JSONField(default=list)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="freeze_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"Freeze {self.starts_at:%Y-%m-%d} to {self.ends_at:%Y-%m-%d}: {self.reason[:40]}"


class ReviewOutcome(models.TextChoices):
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    MISUSE = "misuse", "Flagged as misuse"


class BreakGlassUse(models.Model):
    """One break-glass (or a drill of one): who, why, for how long, and its review afterwards.

    A real use owns the request whose grants it opened; a drill owns none.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="breakglass_uses")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="breakglass_uses")
    workload_name = models.CharField(max_length=200)
    request = models.OneToOneField(
        ExceptionRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="breakglass"
    )
    drill = models.BooleanField(default=False)
    incident_ref = models.CharField(max_length=100)
    reason = models.TextField()
    destinations = models.JSONField(default=list)
    duration = models.DurationField()
    flow_started_at = models.DateTimeField(help_text="When the user opened the break-glass flow (before step-up).")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    review_due_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_outcome = models.CharField(max_length=16, choices=ReviewOutcome.choices, blank=True)
    review_notes = models.TextField(blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["drill", "reviewed_at", "review_due_at"], name="breakglass_review_queue"),
            models.Index(fields=["team", "drill", "created_at"], name="breakglass_team_drills"),
        ]

    def __str__(self) -> str:
        return f"{'Drill' if self.drill else 'Break-glass'} #{self.pk} by {self.user_id} ({self.incident_ref})"

    @property
    def flow_seconds(self) -> float:
        return (self.created_at - self.flow_started_at).total_seconds()

    def snapshot(self) -> dict[str, object]:
        return {
            "user": self.user.get_username(),
            "team": self.team.slug,
            "workload": self.workload_name,
            "request": self.request_id,
            "drill": self.drill,
            "incident_ref": self.incident_ref,
            "destinations": self.destinations,
            "duration": self.duration,
            "flow_seconds": round(self.flow_seconds, 3),
            "expires_at": self.expires_at,
            "review_due_at": self.review_due_at,
        }
