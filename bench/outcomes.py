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
            values: list[tuple[str, str, str, str, float]] = []
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
                        for metric, value in (
                            (Metric.REVOKED_STALE, back % 3),
                            (Metric.REVOKED_OTHER, back % 2),
                            (Metric.STALE_NOTICES_OPEN, back % 4),
                        ):
                            values.append((metric, team, environment, tier, value))
                    values.append((Metric.APPROVALS, team, environment, ALL, 3))
                    values.append((Metric.DENIED_ATTEMPTS, team, environment, ALL, 40 + n))
                    values.append((Metric.BREAKGLASS_USES, team, environment, ALL, int(back % 5 == 0)))
                    values.append((Metric.BREAKGLASS_UNREVIEWED, team, environment, ALL, int(back % 9 == 0)))
                    values.append((Metric.BREAKGLASS_OVERDUE, team, environment, ALL, int(back % 18 == 0)))
                values.append((Metric.BREAKGLASS_DRILLS, team, ALL, ALL, int(back % 30 == 0)))
            for environment in Environment.values:
                values.append((Metric.TRAFFIC_VIA_EGRESS_POINTS, ALL, environment, ALL, 90_000))
                values.append((Metric.TRAFFIC_VIA_NODES, ALL, environment, ALL, 10_000))
            for team in [*slugs, ALL]:
                for environment in [*Environment.values, ALL]:
                    for metric, hours_or_seconds in (
                        (Metric.APPROVE_P50_HOURS, 4.0),
                        (Metric.APPROVE_P90_HOURS, 20.0),
                        (Metric.FIRST_DECISION_P50_HOURS, 1.0),
                        (Metric.FIRST_DECISION_P90_HOURS, 6.0),
                        (Metric.POLICY_UPDATE_P50_SECONDS, 3.0),
                        (Metric.POLICY_UPDATE_P90_SECONDS, 9.0),
                        (Metric.ENGINE_P50_SECONDS, 20.0),
                        (Metric.ENGINE_P90_SECONDS, 70.0),
                    ):
                        values.append((metric, team, environment, ALL, hours_or_seconds))
            SnapshotValue.objects.bulk_create(
                [
                    SnapshotValue(snapshot=snapshot, day=day, metric=m, team=t, environment=e, tier=r, value=v)
                    for m, t, e, r, v in values
                ],
                batch_size=5000,
            )
            rows += len(values)
    return rows


def fill_denied(identities: int = 300, hosts: int = 5, days: int = 90) -> int:
    """Denied traffic behind the top-callers tables: an identity per workload, a row per host and day."""
    from django.db import transaction

    from traffic.models import DeniedTraffic

    DeniedTraffic.objects.filter(identity__startswith="bench-denied/").delete()
    today = datetime.now(UTC).date()
    now = datetime.now(UTC)
    rows = [
        DeniedTraffic(
            identity=f"bench-denied/{i}",
            host=f"h{h}.example",
            port=443,
            day=today - timedelta(days=d),
            count=1 + (i * h + d) % 17,
            last_seen=now,
        )
        for i in range(identities)
        for h in range(hosts)
        for d in range(days)
    ]
    with transaction.atomic():
        DeniedTraffic.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def bench_outcomes() -> None:
    """Target: the page costs a handful of queries whatever the period; time is printed."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    rows = fill_year()
    denied = fill_denied()
    user, _ = get_user_model().objects.get_or_create(username="bench-metrics")
    client = Client(HTTP_HOST="localhost")  # bench runs outside the test runner: no "testserver"
    client.force_login(user)
    print(f"outcome snapshots: 365 days, {rows:,} rows; {denied:,} denied-traffic rows")
    for query in ("?period=7", "?period=90", "?period=90&team=team-3", "?period=90&environment=prod"):
        client.get(f"/outcomes/{query}")  # warm
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            for _ in range(5):
                response = client.get(f"/outcomes/{query}")
            elapsed = (time.perf_counter() - started) / 5
        assert response.status_code == 200
        print(f"metrics page {query:<24} {elapsed * 1000:6.0f} ms, {len(queries) // 5} queries per render")
