"""Approver dashboard over 10,000 pending requests: queries per page and server time per page.

Target: the query count is the same for every page and filter (it does not grow
with the queue); a page renders in <= 300 ms on PostgreSQL.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta


def bench_dashboard(pending: int = 10_000) -> None:
    from allauth.mfa.models import Authenticator
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from approvals.models import ApproverGroup, Decision
    from approvals.policy import current_policy
    from bench.run import _reset
    from exceptions.models import ExceptionRequest, RequestDestination, Team, TeamMembership, Workload

    _reset()
    Decision.objects.all().delete()
    Authenticator.objects.all().delete()
    users = get_user_model().objects
    requester, _ = users.get_or_create(username="bench-requester")
    approver, _ = users.get_or_create(username="bench-approver")
    security, _ = users.get_or_create(username="bench-security")
    Group.objects.get_or_create(name="security-officers")[0].user_set.add(security)
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    for user in (approver, security):  # high-risk rules need an authenticator (MFA at the decision)
        TOTP.activate(user, generate_totp_secret())
    teams = [Team.objects.create(name=f"Team {i}", slug=f"team-{i}") for i in range(10)]
    for team in teams:
        TeamMembership.objects.create(team=team, user=requester)
    group = ApproverGroup.objects.create(name="Bench approvers")
    group.teams.add(*teams)
    group.members.add(approver)
    environments = ["dev", "staging", "prod"]
    workloads = Workload.objects.bulk_create(
        Workload(
            team=teams[i % 10],
            name=f"w{i}",
            identity=f"spiffe://bench/ns/b/sa/w{i}",
            identity_kind="kubernetes",
            environment=environments[i % 3],
        )
        for i in range(300)
    )
    now = timezone.now()
    tiers = ["low", "medium", "high"]
    requests = ExceptionRequest.objects.bulk_create(
        (
            ExceptionRequest(
                workload=workloads[i % 300],
                requester=requester,
                purpose="partner_api",
                data_class="internal",
                justification="Calls the partner API every night to settle payments.",
                ticket_ref=f"CHG-{i}",
                lifetime=timedelta(days=3),
                status="pending",
                risk_tier=tiers[(i // 3) % 3],
            )
            for i in range(pending)
        ),
        batch_size=5000,
    )
    ExceptionRequest.objects.filter(pk__in=[r.pk for r in requests]).update(created_at=now - timedelta(days=3))
    RequestDestination.objects.bulk_create(
        (
            RequestDestination(request=r, host=f"h{j}.partner{i}.example", port=443)
            for i, r in enumerate(requests)
            for j in range(1 + i % 5)
        ),
        batch_size=10000,
    )
    revision = current_policy().revision
    Decision.objects.bulk_create(
        Decision(
            request=r,
            actor=approver,
            kind="approve",
            counts_for="owning-team",
            rule="high-risk",
            policy_revision=revision,
            request_revision=1,
            created_at=now,
        )
        for r in requests
        if r.risk_tier == "high" and r.pk % 2
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    client = Client(SERVER_NAME="localhost")
    print(f"dashboard: {pending:,} pending requests, 25 per page")
    for user, label in ((approver, "team approver"), (security, "security officer")):
        client.force_login(user)
        for query in ("", "?page=200", "?environment=prod", "?tier=high&mine=on", "?team=team-3&purpose=partner_api"):
            timings = []
            counts = set()
            for _ in range(5):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(f"/approvals/{query}")
                    timings.append(time.perf_counter() - started)
                assert response.status_code == 200, response.status_code
                counts.add(len(queries))
            print(
                f"  {label:<16} /approvals/{query:<32} queries {sorted(counts)}  "
                f"median {statistics.median(timings) * 1000:6.1f} ms  max {max(timings) * 1000:6.1f} ms"
            )
