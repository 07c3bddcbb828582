"""Taking the daily outcome snapshot (the only writer of snapshot rows)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import product

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals.models import BreakGlassUse
from audit.services import SYSTEM, Actor, record_event
from exceptions.choices import GrantStatus, RevokeKind
from exceptions.models import BundlePublication, ExceptionRequest, Grant, Workload
from outcomes.models import ALL, UNREGISTERED, Metric, SnapshotDay, SnapshotValue
from outcomes.selectors import APPROVED_STATUSES
from traffic.models import (
    BundleRevisionSeen,
    DeniedTraffic,
    ObservedFlow,
    StaleNotice,
)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), for q in [0, 1]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _grant_values(now: datetime) -> list[SnapshotValue]:
    horizon = now + timedelta(days=settings.EGRESS_EXPIRING_SOON_DAYS)
    rows = (
        Grant.objects.filter(status=GrantStatus.ACTIVE)
        .values_list("workload__team__slug", "workload__environment", "request__risk_tier")
        .annotate(
            active=Count("id"),
            wildcards=Count("id", filter=Q(host__startswith="*.")),
            expiring_soon=Count("id", filter=Q(expires_at__lte=horizon)),
        )
        .order_by()
    )
    values = []
    for team, environment, tier, active, wildcard, expiring in rows:
        for metric, value in (
            (Metric.ACTIVE_GRANTS, active),
            (Metric.WILDCARD_GRANTS, wildcard),
            (Metric.EXPIRING_GRANTS, expiring),
        ):
            values.append(SnapshotValue(metric=metric, team=team, environment=environment, tier=tier, value=value))
    return values


@dataclass(frozen=True)
class Pushes:
    """Successful publishes that began in [start, end + 1 day), ordered by when they began.

    A publish compiles the state as it begins, so it carries an approval only if it began
    after it. ``engine_seen[i]`` is the earliest an engine reported a decision with the
    revision of publish i or of any later one (each later bundle also carries the approval).
    """

    began: list[datetime]
    pushed: list[datetime]
    engine_seen: list[datetime | None]

    def after(self, at: datetime) -> tuple[datetime, datetime | None] | None:
        """(pushed, first engine decision) for an approval at ``at``; None before any push."""
        first = bisect_left(self.began, at)
        if first == len(self.began):
            return None
        return self.pushed[first], self.engine_seen[first]


def _pushes(start: datetime, end: datetime) -> Pushes:
    rows = list(
        BundlePublication.objects.filter(
            status=BundlePublication.Status.PUBLISHED, created_at__gte=start, created_at__lt=end + timedelta(days=1)
        ).values_list("created_at", "duration_ms", "revision")
    )
    seen = dict(
        BundleRevisionSeen.objects.filter(revision__in={r for _, _, r in rows}).values_list("revision", "first_seen")
    )
    pushes = sorted((pushed - timedelta(milliseconds=ms), pushed, revision) for pushed, ms, revision in rows)
    engine: list[datetime | None] = [None] * len(pushes)
    earliest: datetime | None = None
    for i in range(len(pushes) - 1, -1, -1):
        _, pushed, revision = pushes[i]
        at = seen.get(revision)
        # A revision seen before it was pushed is an older identical bundle's: it says nothing here.
        if at is not None and at >= pushed and (earliest is None or at < earliest):
            earliest = at
        engine[i] = earliest
    return Pushes([b for b, _, _ in pushes], [p for _, p, _ in pushes], engine)


def _spread(values: list[SnapshotValue], dims: dict[str, str], sample: list[float], p50: Metric, p90: Metric) -> None:
    values.append(SnapshotValue(metric=p50, value=round(percentile(sample, 0.5), 3), **dims))
    values.append(SnapshotValue(metric=p90, value=round(percentile(sample, 0.9), 3), **dims))


def _approval_values(start: datetime, end: datetime) -> list[SnapshotValue]:
    """For requests approved in [start, end): time to full approval (submitted — created, or a
    draft's submission — to decided: the approval that completed the quorum), time to policy update (decided to
    the push of the first publish that began after it, and to the first decision an engine
    reported with that bundle or a later one). For requests first decided in [start, end),
    whatever the decision: time to the first decision (a Decision row; decided_at for
    requests decided before decisions were recorded).

    Percentiles cannot be summed, so every team/environment rollup gets its own row.
    """
    decided = ExceptionRequest.objects.filter(
        status__in=APPROVED_STATUSES, decided_at__gte=start, decided_at__lt=end
    ).values_list("workload__team__slug", "workload__environment", Coalesce("submitted_at", "created_at"), "decided_at")
    pushes = _pushes(start, end)
    samples: dict[Metric, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for team, environment, created_at, decided_at in decided:
        assert decided_at is not None  # filtered on it above
        waited = max((decided_at - created_at).total_seconds(), 0) / 3600
        update = pushes.after(decided_at)
        for key in product((team, ALL), (environment, ALL)):
            samples[Metric.APPROVE_P50_HOURS][key].append(waited)
            if update is not None:
                samples[Metric.POLICY_UPDATE_P50_SECONDS][key].append((update[0] - decided_at).total_seconds())
                if update[1] is not None:
                    samples[Metric.ENGINE_P50_SECONDS][key].append((update[1] - decided_at).total_seconds())
    first_decided = (
        ExceptionRequest.objects.annotate(first=Coalesce(Min("decisions__created_at"), "decided_at"))
        .filter(first__gte=start, first__lt=end)
        .values_list("workload__team__slug", "workload__environment", Coalesce("submitted_at", "created_at"), "first")
    )
    for team, environment, created_at, first in first_decided:
        for key in product((team, ALL), (environment, ALL)):
            samples[Metric.FIRST_DECISION_P50_HOURS][key].append(max((first - created_at).total_seconds(), 0) / 3600)
    pairs = {
        Metric.APPROVE_P50_HOURS: Metric.APPROVE_P90_HOURS,
        Metric.FIRST_DECISION_P50_HOURS: Metric.FIRST_DECISION_P90_HOURS,
        Metric.POLICY_UPDATE_P50_SECONDS: Metric.POLICY_UPDATE_P90_SECONDS,
        Metric.ENGINE_P50_SECONDS: Metric.ENGINE_P90_SECONDS,
    }
    values: list[SnapshotValue] = []
    for p50, by_key in samples.items():
        for (team, environment), sample in by_key.items():
            dims = {"team": team, "environment": environment, "tier": ALL}
            _spread(values, dims, sample, p50, pairs[p50])
            if p50 == Metric.APPROVE_P50_HOURS and ALL not in (team, environment):
                # Counts are stored at the finest grain only (they are summed when drawn).
                values.append(SnapshotValue(metric=Metric.APPROVALS, value=len(sample), **dims))
    return values


def _by_owner(totals: dict[str, int]) -> dict[tuple[str, str], int]:
    """Figures by identity, summed by the team and environment of each identity's workload
    (UNREGISTERED for identities no workload has)."""
    owners = {
        identity: (team, environment)
        for identity, team, environment in Workload.objects.filter(identity__in=list(totals)).values_list(
            "identity", "team__slug", "environment"
        )
    }
    by_owner: dict[tuple[str, str], int] = defaultdict(int)
    for identity, n in totals.items():
        by_owner[owners.get(identity, (UNREGISTERED, UNREGISTERED))] += n
    return by_owner


def _denied_values(day: date) -> list[SnapshotValue]:
    """Denied attempts that day by the team and environment of the identity's workload."""
    rows = DeniedTraffic.objects.filter(day=day).values("identity").annotate(attempts=Sum("count")).order_by()
    by_owner = _by_owner({row["identity"]: row["attempts"] for row in rows})
    return [
        SnapshotValue(metric=Metric.DENIED_ATTEMPTS, team=team, environment=environment, tier=ALL, value=attempts)
        for (team, environment), attempts in sorted(by_owner.items())
    ]


def _traffic_values(day: date) -> list[SnapshotValue]:
    """Distinct flows observed that day (identity, host and port), by whether a registered egress
    point saw them or only node observers did, by the team and environment of the identity's
    workload: a flow two observers reported counts once, however many records they sent."""
    rows = (
        ObservedFlow.objects.filter(day=day)
        .values_list("identity")
        .annotate(via=Count("pk", filter=Q(via_egress_point=True)), nodes=Count("pk", filter=Q(via_egress_point=False)))
        .order_by()
    )
    via, nodes = {}, {}
    for identity, through, only_nodes in rows:
        via[identity], nodes[identity] = through, only_nodes
    values = []
    for metric, totals in ((Metric.TRAFFIC_VIA_EGRESS_POINTS, via), (Metric.TRAFFIC_VIA_NODES, nodes)):
        for (team, environment), flows in sorted(_by_owner(totals).items()):
            if flows:
                values.append(SnapshotValue(metric=metric, team=team, environment=environment, tier=ALL, value=flows))
    return values


def _revocation_values(start: datetime, end: datetime) -> list[SnapshotValue]:
    """Grants revoked that day by reason (stale, or a person's), and open stale notices."""
    grain = ("workload__team__slug", "workload__environment", "request__risk_tier")
    revoked = (
        Grant.objects.filter(status=GrantStatus.REVOKED, revoked_at__gte=start, revoked_at__lt=end)
        .values_list(*grain)
        .annotate(
            stale=Count("id", filter=Q(revoke_kind=RevokeKind.STALE)),
            # A renewal taking over (kind superseded) is not a loss of access.
            other=Count("id", filter=~Q(revoke_kind__in=[RevokeKind.STALE, RevokeKind.SUPERSEDED])),
        )
        .order_by()
    )
    values = []
    for team, environment, tier, stale, other in revoked:
        dims = {"team": team, "environment": environment, "tier": tier}
        values += [
            SnapshotValue(metric=Metric.REVOKED_STALE, value=stale, **dims),
            SnapshotValue(metric=Metric.REVOKED_OTHER, value=other, **dims),
        ]
    open_notices = (
        StaleNotice.objects.filter(status=StaleNotice.Status.NOTICED, grant__status=GrantStatus.ACTIVE)
        .values_list(*(f"grant__{g}" for g in grain))
        .annotate(n=Count("id"))
        .order_by()
    )
    for team, environment, tier, n in open_notices:
        values.append(
            SnapshotValue(metric=Metric.STALE_NOTICES_OPEN, team=team, environment=environment, tier=tier, value=n)
        )
    return values


def _breakglass_values(start: datetime, end: datetime, now: datetime) -> list[SnapshotValue]:
    """Real uses opened that day, uses awaiting review and overdue ones at the snapshot (by team
    and the environment of the workload they opened a path for), and drills that day by team."""
    real = BreakGlassUse.objects.filter(drill=False)
    grain = ("team__slug", "request__workload__environment")
    counts: dict[tuple[Metric, str, str], int] = defaultdict(int)
    for metric, rows in (
        (Metric.BREAKGLASS_USES, real.filter(created_at__gte=start, created_at__lt=end)),
        (Metric.BREAKGLASS_UNREVIEWED, real.filter(reviewed_at__isnull=True)),
        (Metric.BREAKGLASS_OVERDUE, real.filter(reviewed_at__isnull=True, review_due_at__lt=now)),
    ):
        for team, environment, n in rows.values_list(*grain).annotate(n=Count("id")).order_by():
            counts[(metric, team, environment or UNREGISTERED)] += n
    drills = BreakGlassUse.objects.filter(drill=True, created_at__gte=start, created_at__lt=end)
    for team, n in drills.values_list("team__slug").annotate(n=Count("id")).order_by():
        counts[(Metric.BREAKGLASS_DRILLS, team, ALL)] += n
    return [
        SnapshotValue(metric=metric, team=team, environment=environment, tier=ALL, value=n)
        for (metric, team, environment), n in sorted(counts.items())
    ]


# Figures counted by the day of the records themselves, which may arrive days late.
LATE_METRICS = (Metric.DENIED_ATTEMPTS, Metric.TRAFFIC_VIA_EGRESS_POINTS, Metric.TRAFFIC_VIA_NODES)


def _retake_traffic(day: date, now: datetime) -> list[date]:
    """Take again the traffic figures of the snapshots before ``day`` that records may still
    arrive for (gateways upload with minutes of delay, and batches up to
    EGRESS_INGEST_DEDUP_DAYS old are accepted): a flow reported after midnight, or one a gateway
    saw after a node observer, reaches its own day. Returns the days taken again."""
    earliest = (now - timedelta(days=settings.EGRESS_INGEST_DEDUP_DAYS)).astimezone(UTC).date()
    snapshots = list(SnapshotDay.objects.select_for_update().filter(day__gte=earliest, day__lt=day).order_by("day"))
    if not snapshots:
        return []
    SnapshotValue.objects.filter(snapshot__in=snapshots, metric__in=LATE_METRICS).delete()
    values = []
    for snapshot in snapshots:
        for value in _denied_values(snapshot.day) + _traffic_values(snapshot.day):
            value.snapshot, value.day = snapshot, snapshot.day
            values.append(value)
    SnapshotValue.objects.bulk_create(values, batch_size=1000)
    return [snapshot.day for snapshot in snapshots]


def take_daily_snapshot(*, actor: Actor = SYSTEM, now: datetime | None = None) -> SnapshotDay:
    """Snapshot today's figures (UTC day of ``now``); again the same day replaces them. The
    traffic figures of the earlier days records are still accepted for are taken again."""
    now = now or timezone.now()
    day = now.astimezone(UTC).date()
    start = datetime.combine(day, time.min, tzinfo=UTC)
    with transaction.atomic():
        snapshot, created = SnapshotDay.objects.select_for_update().get_or_create(day=day, defaults={"taken_at": now})
        if not created:
            snapshot.values.all().delete()
            snapshot.taken_at = now
            snapshot.save(update_fields=["taken_at"])
        end = start + timedelta(days=1)
        values = (
            _grant_values(now)
            + _approval_values(start, end)
            + _denied_values(day)
            + _traffic_values(day)
            + _revocation_values(start, end)
            + _breakglass_values(start, end, now)
        )
        for value in values:
            value.snapshot = snapshot
            value.day = day
        SnapshotValue.objects.bulk_create(values, batch_size=1000)
        retaken = _retake_traffic(day, now)
        record_event(
            actor=actor,
            action="metrics.snapshot_taken",
            obj=snapshot,
            after={"day": day, "values": len(values), "replaced": not created, "traffic_retaken": retaken},
        )
    return snapshot
