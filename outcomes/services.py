"""Taking the daily outcome snapshot (the only writer of snapshot rows)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from itertools import product

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.services import SYSTEM, Actor, record_event
from exceptions.choices import GrantStatus
from exceptions.models import BundlePublication, ExceptionRequest, Grant
from outcomes.models import ALL, Metric, SnapshotDay, SnapshotValue
from outcomes.selectors import APPROVED_STATUSES


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


def _pushes(start: datetime, end: datetime) -> tuple[list[datetime], list[datetime]]:
    """Successful publishes that began in [start, end + 1 day): when each began and when it was pushed.

    A publish compiles the state as it begins, so it carries an approval only if it began after it.
    """
    rows = BundlePublication.objects.filter(
        status=BundlePublication.Status.PUBLISHED, created_at__gte=start, created_at__lt=end + timedelta(days=1)
    ).values_list("created_at", "duration_ms")
    pushes = sorted((pushed - timedelta(milliseconds=ms), pushed) for pushed, ms in rows)
    return [began for began, _ in pushes], [pushed for _, pushed in pushes]


def _approval_values(start: datetime, end: datetime) -> list[SnapshotValue]:
    """For requests approved in [start, end): time to approve (submitted, i.e. created, to decided)
    and time to policy update (decided to the push of the first publish that began after it).

    Percentiles cannot be summed, so every team/environment rollup gets its own row.
    """
    decided = ExceptionRequest.objects.filter(
        status__in=APPROVED_STATUSES, decided_at__gte=start, decided_at__lt=end
    ).values_list("workload__team__slug", "workload__environment", "created_at", "decided_at")
    began, pushed = _pushes(start, end)
    hours: dict[tuple[str, str], list[float]] = defaultdict(list)
    to_policy: dict[tuple[str, str], list[float]] = defaultdict(list)
    for team, environment, created_at, decided_at in decided:
        assert decided_at is not None  # filtered on it above
        waited = max((decided_at - created_at).total_seconds(), 0) / 3600
        first = bisect_left(began, decided_at)
        for key in product((team, ALL), (environment, ALL)):
            hours[key].append(waited)
            if first < len(began):
                to_policy[key].append((pushed[first] - decided_at).total_seconds())
    values = []
    for (team, environment), seconds in to_policy.items():
        dims = {"team": team, "environment": environment, "tier": ALL}
        for metric, q in ((Metric.POLICY_UPDATE_P50_SECONDS, 0.5), (Metric.POLICY_UPDATE_P90_SECONDS, 0.9)):
            values.append(SnapshotValue(metric=metric, value=round(percentile(seconds, q), 3), **dims))
    for (team, environment), waits in hours.items():
        dims = {"team": team, "environment": environment, "tier": ALL}
        if ALL not in (team, environment):
            # Counts are stored at the finest grain only (they are summed when drawn).
            values.append(SnapshotValue(metric=Metric.APPROVALS, value=len(waits), **dims))
        values.append(SnapshotValue(metric=Metric.APPROVE_P50_HOURS, value=round(percentile(waits, 0.5), 3), **dims))
        values.append(SnapshotValue(metric=Metric.APPROVE_P90_HOURS, value=round(percentile(waits, 0.9), 3), **dims))
    return values


def take_daily_snapshot(*, actor: Actor = SYSTEM, now: datetime | None = None) -> SnapshotDay:
    """Snapshot today's figures (UTC day of ``now``); again the same day replaces them."""
    now = now or timezone.now()
    day = now.astimezone(UTC).date()
    start = datetime.combine(day, time.min, tzinfo=UTC)
    with transaction.atomic():
        snapshot, created = SnapshotDay.objects.select_for_update().get_or_create(day=day, defaults={"taken_at": now})
        if not created:
            snapshot.values.all().delete()
            snapshot.taken_at = now
            snapshot.save(update_fields=["taken_at"])
        values = _grant_values(now) + _approval_values(start, start + timedelta(days=1))
        for value in values:
            value.snapshot = snapshot
            value.day = day
        SnapshotValue.objects.bulk_create(values, batch_size=1000)
        record_event(
            actor=actor,
            action="metrics.snapshot_taken",
            obj=snapshot,
            after={"day": day, "values": len(values), "replaced": not created},
        )
    return snapshot
