"""The outcome metrics page over a year of daily snapshots: queries and time per render."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def fill_year(teams: int = 10) -> int:
    """365 snapshot days of 10 teams x 3 environments x 3 tiers, plus the approval rollups."""
    from django.db import transaction

    from exceptions.choices import Environment, RiskTier
    from outcomes.models import ALL, Metric, SnapshotDay, SnapshotValue

    SnapshotDay.objects.all().delete()
    today = datetime.now(UTC).date()
    slugs = [f"team-{n}" for n in range(teams)]
    rows = 0
    with transaction.atomic():
        for back in range(365):
            day = today - timedelta(days=back)
            snapshot = SnapshotDay.objects.create(day=day, taken_at=datetime.now(UTC))
            values = []
            for n, team in enumerate(slugs):
                for environment in Environment.values:
                    for tier in RiskTier.values:
                        base = 20 + n + back % 7
                        for metric, value in (
                            (Metric.ACTIVE_GRANTS, base),
                            (Metric.WILDCARD_GRANTS, base // 5),
                            (Metric.EXPIRING_GRANTS, base // 3),
                        ):
                            values.append((metric, team, environment, tier, value))
                    values.append((Metric.APPROVALS, team, environment, ALL, 3))
            for team in [*slugs, ALL]:
                for environment in [*Environment.values, ALL]:
                    values.append((Metric.APPROVE_P50_HOURS, team, environment, ALL, 4.0))
                    values.append((Metric.APPROVE_P90_HOURS, team, environment, ALL, 20.0))
            SnapshotValue.objects.bulk_create(
                [
                    SnapshotValue(snapshot=snapshot, day=day, metric=m, team=t, environment=e, tier=r, value=v)
                    for m, t, e, r, v in values
                ],
                batch_size=5000,
            )
            rows += len(values)
    return rows


def bench_outcomes() -> None:
    """Target: the page costs a handful of queries whatever the period; time is printed."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    rows = fill_year()
    user, _ = get_user_model().objects.get_or_create(username="bench-metrics")
    client = Client(HTTP_HOST="localhost")  # bench runs outside the test runner: no "testserver"
    client.force_login(user)
    print(f"outcome snapshots: 365 days, {rows:,} rows")
    for query in ("?period=7", "?period=90", "?period=90&team=team-3", "?period=90&environment=prod"):
        client.get(f"/outcomes/{query}")  # warm
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            for _ in range(5):
                response = client.get(f"/outcomes/{query}")
            elapsed = (time.perf_counter() - started) / 5
        assert response.status_code == 200
        print(f"metrics page {query:<24} {elapsed * 1000:6.0f} ms, {len(queries) // 5} queries per render")
