"""Taking the daily outcome snapshot (the only writer of snapshot rows)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from itertools import product

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.services import SYSTEM, Actor, record_event
from exceptions.choices import GrantStatus
from exceptions.models import ExceptionRequest, Grant
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


def _approval_values(start: datetime, end: datetime) -> list[SnapshotValue]:
    """Time to approve for requests approved in [start, end): submitted (created) to decided.

    Percentiles cannot be summed, so every team/environment rollup gets its own row.
    """
    decided = ExceptionRequest.objects.filter(
        status__in=APPROVED_STATUSES, decided_at__gte=start, decided_at__lt=end
    ).values_list("workload__team__slug", "workload__environment", "created_at", "decided_at")
    hours: dict[tuple[str, str], list[float]] = defaultdict(list)
    for team, environment, created_at, decided_at in decided:
        assert decided_at is not None  # filtered on it above
        waited = max((decided_at - created_at).total_seconds(), 0) / 3600
        for key in product((team, ALL), (environment, ALL)):
            hours[key].append(waited)
    values = []
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
