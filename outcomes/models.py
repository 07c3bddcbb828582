"""Daily snapshots of outcome figures, so trends survive restarts and a chart costs one query."""

from __future__ import annotations

from django.db import models

# A dimension value meaning "all of them" (a rollup row), for figures that cannot be
# summed across rows (percentiles). Counts are stored at the finest grain and summed.
ALL = "*"


class Metric(models.TextChoices):
    ACTIVE_GRANTS = "active_grants", "Active grants"
    WILDCARD_GRANTS = "wildcard_grants", "Active wildcard grants"
    EXPIRING_GRANTS = "expiring_grants", "Active grants expiring within 14 days"
    APPROVALS = "approvals", "Requests approved that day"
    APPROVE_P50_HOURS = "approve_p50_hours", "Time to full approval, median (hours)"
    APPROVE_P90_HOURS = "approve_p90_hours", "Time to full approval, 90th percentile (hours)"
    FIRST_DECISION_P50_HOURS = "first_decision_p50_hours", "Time to first decision, median (hours)"
    FIRST_DECISION_P90_HOURS = "first_decision_p90_hours", "Time to first decision, 90th percentile (hours)"
    POLICY_UPDATE_P50_SECONDS = "policy_p50_seconds", "Approval to pushed commit, median (seconds)"
    POLICY_UPDATE_P90_SECONDS = "policy_p90_seconds", "Approval to pushed commit, 90th percentile (seconds)"
    ENGINE_P50_SECONDS = "engine_p50_seconds", "Approval to an engine's first decision with it, median (seconds)"
    ENGINE_P90_SECONDS = "engine_p90_seconds", "Approval to an engine's first decision with it, 90th pct (seconds)"
    DENIED_ATTEMPTS = "denied_attempts", "Denied egress attempts"
    # Distinct flows (identity, host, port) observed that day, by the team and environment of
    # the identity's workload: through a registered egress point if any gateway, NAT or proxy
    # saw the flow, else seen only by node observers (Cilium).
    TRAFFIC_VIA_EGRESS_POINTS = "traffic_egress_points", "Flows seen by a registered egress point"
    TRAFFIC_VIA_NODES = "traffic_nodes", "Flows seen only by node observers (Cilium)"
    REVOKED_STALE = "revoked_stale", "Grants revoked as stale"
    REVOKED_OTHER = "revoked_other", "Grants revoked by a person"
    STALE_NOTICES_OPEN = "stale_notices_open", "Open stale notices"
    BREAKGLASS_USES = "breakglass_uses", "Break-glass uses"
    BREAKGLASS_UNREVIEWED = "breakglass_unreviewed", "Break-glass uses awaiting review"
    BREAKGLASS_OVERDUE = "breakglass_overdue", "Break-glass uses past their review due time"
    # Drills own no request, so no environment: stored with environment ALL.
    BREAKGLASS_DRILLS = "breakglass_drills", "Break-glass drills"


COUNT_METRICS = frozenset(
    {
        Metric.ACTIVE_GRANTS,
        Metric.WILDCARD_GRANTS,
        Metric.EXPIRING_GRANTS,
        Metric.APPROVALS,
        Metric.DENIED_ATTEMPTS,
        Metric.TRAFFIC_VIA_EGRESS_POINTS,
        Metric.TRAFFIC_VIA_NODES,
        Metric.REVOKED_STALE,
        Metric.REVOKED_OTHER,
        Metric.STALE_NOTICES_OPEN,
        Metric.BREAKGLASS_USES,
        Metric.BREAKGLASS_UNREVIEWED,
        Metric.BREAKGLASS_OVERDUE,
        Metric.BREAKGLASS_DRILLS,
    }
)
# Identities no registered workload has (denied traffic of an unknown caller): their team.
UNREGISTERED = "-"


class SnapshotDay(models.Model):
    """One day's snapshot; taking it again the same day replaces its values."""

    day = models.DateField(unique=True)
    taken_at = models.DateTimeField()

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"outcome snapshot {self.day}"


class SnapshotValue(models.Model):
    snapshot = models.ForeignKey(SnapshotDay, on_delete=models.CASCADE, related_name="values")
    day = models.DateField()  # the snapshot's, repeated so a chart reads one table
    metric = models.CharField(max_length=32, choices=Metric.choices)
    team = models.CharField(max_length=100)  # team slug, or ALL
    environment = models.CharField(max_length=16)  # or ALL
    tier = models.CharField(max_length=8)  # risk tier, or ALL
    value = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["day", "metric"], name="outcome_day_metric")]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "metric", "team", "environment", "tier"], name="unique_outcome_value"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.metric} {self.team}/{self.environment}/{self.tier} = {self.value}"


class PolicyUpdateStage(models.TextChoices):
    PUSHED = "pushed", "Approval to pushed commit"
    ENGINE = "engine", "Approval to an engine's first decision with it"


class PolicyUpdate(models.Model):
    """One approval on its way into the engines: each stage is observed once, when it happens
    (the row is the proof it was, so a re-publish or a retried ingestion adds nothing)."""

    request = models.OneToOneField(
        "exceptions.ExceptionRequest", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    decided_at = models.DateTimeField()
    pushed_at = models.DateTimeField()  # the first pushed commit that carried it
    engine_at = models.DateTimeField(null=True, blank=True)  # an engine's first decision with it

    class Meta:
        indexes = [
            models.Index(
                fields=["pushed_at"], condition=models.Q(engine_at__isnull=True), name="policy_update_awaiting_engine"
            )
        ]

    def __str__(self) -> str:
        return f"request {self.request_id} decided {self.decided_at:%Y-%m-%d %H:%M:%S}"


class PolicyUpdateBucket(models.Model):
    """Observations of one stage that fell in one histogram bucket (not cumulative: the scrape
    adds them up, so changing the bounds never makes a stored count wrong), and their sum."""

    stage = models.CharField(max_length=8, choices=PolicyUpdateStage.choices)
    le = models.CharField(max_length=16)  # the bucket's upper bound in seconds as Prometheus writes it, or +Inf
    count = models.BigIntegerField(default=0)
    total_seconds = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stage", "le"], name="one_policy_update_bucket")]

    def __str__(self) -> str:
        return f"{self.stage} le={self.le}: {self.count}"
