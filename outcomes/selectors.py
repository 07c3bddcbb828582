"""Reads for the outcome metrics page: a few aggregate queries over the snapshot table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce

from exceptions.choices import Environment, RequestStatus, RiskTier
from exceptions.models import ExceptionRequest, Team, Workload
from outcomes.models import ALL, COUNT_METRICS, Metric, SnapshotValue
from traffic.models import DeniedTraffic

PERIODS = (7, 30, 90)
# Decided and not refused: the request was approved, whatever happened to it later.
APPROVED_STATUSES = (RequestStatus.APPROVED, RequestStatus.ACTIVE, RequestStatus.EXPIRED, RequestStatus.REVOKED)


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    unit: str
    days: list[date]
    series: list[Series]
    description: str = ""

    def rows(self) -> list[tuple[date, list[float | None]]]:
        """Day by day, one value per series (the chart as a table)."""
        return [(day, [s.values[i] for s in self.series]) for i, day in enumerate(self.days)]


@dataclass(frozen=True)
class Filters:
    period: int = 30
    team: str = ""
    environment: str = ""


@dataclass
class Outcomes:
    filters: Filters
    charts: list[Chart]
    breakdown: list[tuple[str, str, int]] = field(default_factory=list)  # team, environment, active grants
    breakdown_day: date | None = None
    drills: list[tuple[str, int]] = field(default_factory=list)  # team, drills in the period


def filter_choices() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return list(Team.objects.values_list("slug", "name")), list(Environment.choices)


def outcomes(*, filters: Filters, today: date) -> Outcomes:
    start = today - timedelta(days=filters.period - 1)
    days = [start + timedelta(days=i) for i in range(filters.period)]
    index = {day: i for i, day in enumerate(days)}

    counts: dict[tuple[str, str], list[float | None]] = defaultdict(lambda: [None] * len(days))
    scoped = SnapshotValue.objects.filter(day__gte=start, day__lte=today)
    if filters.team:
        scoped = scoped.filter(team=filters.team)
    if filters.environment:
        scoped = scoped.filter(environment=filters.environment)
    snapshot_days: set[date] = set()
    for day, metric, tier, total in (
        scoped.filter(metric__in=COUNT_METRICS).values_list("day", "metric", "tier").annotate(total=Sum("value"))
    ):
        snapshot_days.add(day)
        counts[(metric, tier)][index[day]] = total

    def summed(metric: str, tiers: list[str]) -> list[float | None]:
        # A snapshot day with no rows for this metric is a real zero; a day without a snapshot is a gap.
        return [
            (sum(counts[(metric, t)][i] or 0 for t in tiers) if day in snapshot_days else None)
            for i, day in enumerate(days)
        ]

    tiers = list(RiskTier.values)
    percentiles: dict[str, list[float | None]] = defaultdict(lambda: [None] * len(days))
    for day, metric, value in SnapshotValue.objects.filter(
        day__gte=start,
        day__lte=today,
        metric__in=PERCENTILE_METRICS,
        team=filters.team or ALL,
        environment=filters.environment or ALL,
        tier=ALL,
    ).values_list("day", "metric", "value"):
        percentiles[metric][index[day]] = value

    def spread(p90: str, p50: str, what: str) -> list[Series]:
        # Short labels: each is drawn at its line's end, in the chart's right margin.
        return [Series(f"{what} p90", percentiles[p90]), Series(f"{what} median", percentiles[p50])]

    wildcards = summed(Metric.WILDCARD_GRANTS, tiers)
    via_points = summed(Metric.TRAFFIC_VIA_EGRESS_POINTS, [ALL])
    via_nodes = summed(Metric.TRAFFIC_VIA_NODES, [ALL])
    share: list[float | None] = [
        round(100 * p / (p + n), 2) if p is not None and n is not None and p + n else None
        for p, n in zip(via_points, via_nodes, strict=True)
    ]

    charts = [
        Chart(
            "active",
            "Active grants by risk tier",
            "grants",
            days,
            [Series("all tiers", summed(Metric.ACTIVE_GRANTS, tiers))]
            + [Series(f"{tier} risk", summed(Metric.ACTIVE_GRANTS, [tier])) for tier in tiers],
            "Grants in force at each day's snapshot.",
        ),
        Chart(
            "wildcards",
            "Active wildcard grants",
            "grants",
            days,
            [Series("wildcard grants", wildcards)],
            "Grants to *.domain names; the trend should go down." + _trend(wildcards),
        ),
        Chart(
            "expiring",
            "Grants expiring within 14 days",
            "grants",
            days,
            [Series("expiring soon", summed(Metric.EXPIRING_GRANTS, tiers))],
            "Active grants that end within the reminder horizon: renewals to expect.",
        ),
        Chart(
            "time_to_approve",
            "Time to approve",
            "hours",
            days,
            spread(Metric.APPROVE_P90_HOURS, Metric.APPROVE_P50_HOURS, "approved")
            + spread(Metric.FIRST_DECISION_P90_HOURS, Metric.FIRST_DECISION_P50_HOURS, "first decision"),
            "From submission to full approval (the approval that completed the quorum), for requests "
            "approved that day; and from submission to the first decision of any approver, for requests "
            "first decided that day.",
        ),
        Chart(
            "policy_update",
            "Time to policy update",
            "seconds",
            days,
            spread(Metric.POLICY_UPDATE_P90_SECONDS, Metric.POLICY_UPDATE_P50_SECONDS, "pushed")
            + spread(Metric.ENGINE_P90_SECONDS, Metric.ENGINE_P50_SECONDS, "in an engine"),
            "From approval to the pushed commit of the first bundle publish that carries it, and to the "
            "first decision an engine reported (OPA decision logs) with that bundle revision or a later one.",
        ),
        Chart(
            "denied",
            "Denied egress attempts",
            "attempts",
            days,
            [Series("denied", summed(Metric.DENIED_ATTEMPTS, [ALL]))],
            "Connections the enforcement points refused: failed exfiltration attempts, or a missing grant "
            "(the top callers and destinations are below, each with a pre-filled request).",
        ),
        Chart(
            "traffic_share",
            "Observed flows through registered egress points",
            "%",
            days,
            [Series("through egress points", share)],
            "Share of the distinct flows observed each day (a workload identity to a host and port) that a "
            "registered egress point (egress gateway, NAT or proxy) saw; the others only node observers such as "
            "Cilium saw. A flow reported by both, or reported many times, counts once.",
        ),
        Chart(
            "observed_flows",
            "Observed flows",
            "flows",
            days,
            [Series("through egress points", via_points), Series("node only", via_nodes)],
            "The distinct flows behind the share: through a registered egress point if any egress point saw the "
            "flow that day, node only if only node observers did; by the team and environment of the workload.",
        ),
        Chart(
            "revocations",
            "Revocations and stale grants",
            "grants",
            days,
            [
                Series("revoked as stale", summed(Metric.REVOKED_STALE, tiers)),
                Series("revoked by a person", summed(Metric.REVOKED_OTHER, tiers)),
                Series("open stale notices", summed(Metric.STALE_NOTICES_OPEN, tiers)),
            ],
            "Grants revoked each day by reason, and grants noticed as unused that are waiting for their grace period.",
        ),
        Chart(
            "breakglass",
            "Break-glass",
            "uses",
            days,
            [
                Series("uses", summed(Metric.BREAKGLASS_USES, [ALL])),
                Series("awaiting review", summed(Metric.BREAKGLASS_UNREVIEWED, [ALL])),
                Series("review overdue", summed(Metric.BREAKGLASS_OVERDUE, [ALL])),
                Series("drills", summed(Metric.BREAKGLASS_DRILLS, [ALL])),
            ],
            "Real break-glass uses opened each day, uses still awaiting their review and those past the review "
            "due time at each snapshot, and drills run each day (drills have no environment).",
        ),
        Chart(
            "approvals",
            "Requests approved",
            "requests",
            days,
            [Series("approved", summed(Metric.APPROVALS, [ALL]))],
            "How many requests were approved each day (the sample behind the time to approve).",
        ),
    ]
    result = Outcomes(filters=filters, charts=charts)
    result.drills = [
        (team, int(total))
        for team, total in scoped.filter(metric=Metric.BREAKGLASS_DRILLS)
        .values_list("team")
        .annotate(total=Sum("value"))
        .order_by("team")
    ]
    if snapshot_days:
        result.breakdown_day = max(snapshot_days)
        result.breakdown = [
            (team, environment, int(total))
            for team, environment, total in scoped.filter(day=result.breakdown_day, metric=Metric.ACTIVE_GRANTS)
            .values_list("team", "environment")
            .annotate(total=Sum("value"))
            .order_by("team", "environment")
        ]
    return result


PERCENTILE_METRICS = (
    Metric.APPROVE_P50_HOURS,
    Metric.APPROVE_P90_HOURS,
    Metric.FIRST_DECISION_P50_HOURS,
    Metric.FIRST_DECISION_P90_HOURS,
    Metric.POLICY_UPDATE_P50_SECONDS,
    Metric.POLICY_UPDATE_P90_SECONDS,
    Metric.ENGINE_P50_SECONDS,
    Metric.ENGINE_P90_SECONDS,
)


def _trend(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    change = known[-1] - known[0]
    return f" Over the period: {known[0]:g} to {known[-1]:g} ({change:+g})."


@dataclass(frozen=True)
class DeniedCaller:
    identity: str
    workload_id: int | None
    attempts: int


@dataclass(frozen=True)
class DeniedRoute:
    identity: str
    workload_id: int | None
    host: str
    port: int
    attempts: int


def top_denied(*, filters: Filters, today: date, limit: int = 10) -> tuple[list[DeniedCaller], list[DeniedRoute]]:
    """The identities with most denied attempts over the period and their most denied
    destinations (two queries plus one for workloads), each tied to its workload when registered."""
    start = today - timedelta(days=filters.period - 1)
    scoped = DeniedTraffic.objects.filter(day__gte=start, day__lte=today)
    if filters.team or filters.environment:
        workloads = Workload.objects.all()
        if filters.team:
            workloads = workloads.filter(team__slug=filters.team)
        if filters.environment:
            workloads = workloads.filter(environment=filters.environment)
        scoped = scoped.filter(identity__in=workloads.values("identity"))
    callers = list(
        scoped.values_list("identity").annotate(attempts=Sum("count")).order_by("-attempts", "identity")[:limit]
    )
    routes = list(
        scoped.values_list("identity", "host", "port")
        .annotate(attempts=Sum("count"))
        .order_by("-attempts", "identity", "host", "port")[:limit]
    )
    identities = {c[0] for c in callers} | {r[0] for r in routes}
    workload_ids = dict(Workload.objects.filter(identity__in=identities).values_list("identity", "id"))
    return (
        [DeniedCaller(identity, workload_ids.get(identity), int(n)) for identity, n in callers],
        [DeniedRoute(i, workload_ids.get(i), host, port, int(n)) for i, host, port, n in routes],
    )


# Seconds: 5 min, 15 min, 1 h, 4 h, 8 h, 1 day, 3 days, 1 week.
APPROVE_BUCKETS = (300, 900, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400, 7 * 86400)


def time_to_approve_buckets() -> dict[str, tuple[list[tuple[str, int]], float]]:
    """Per risk tier: cumulative (le, count) buckets ending with +Inf, and the sum in seconds.

    One aggregate query; requests count from submission (a draft's waiting starts when it is
    submitted) to decision.
    """
    waited = ExpressionWrapper(F("decided_at") - Coalesce("submitted_at", "created_at"), output_field=DurationField())
    rows = (
        ExceptionRequest.objects.filter(status__in=APPROVED_STATUSES, decided_at__isnull=False)
        .annotate(waited=waited)
        .values("risk_tier")
        .annotate(
            total=Count("id"),
            waited_sum=Sum("waited"),
            **{f"le_{s}": Count("id", filter=Q(waited__lte=timedelta(seconds=s))) for s in APPROVE_BUCKETS},
        )
        .order_by()
    )
    found = {row["risk_tier"]: row for row in rows}
    result: dict[str, tuple[list[tuple[str, int]], float]] = {}
    for tier in RiskTier.values:
        row = found.get(tier)
        buckets = [(str(float(s)), int(row[f"le_{s}"]) if row else 0) for s in APPROVE_BUCKETS]
        buckets.append(("+Inf", int(row["total"]) if row else 0))
        total = row["waited_sum"].total_seconds() if row and row["waited_sum"] else 0.0
        result[tier] = (buckets, total)
    return result
