"""The audit viewer over a large chain: the log page with the team and ticket filters and one
object's history, queries and time per render (the chain's status never walks the chain)."""

from __future__ import annotations

import time


def bench_audit_viewer(events: int = 300_000) -> None:
    """Target: query count constant whatever the chain's length; time printed."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.audit_export import fill
    from bench.traffic import _population
    from exceptions.access import AUDITOR_GROUP
    from exceptions.models import ExceptionRequest, Grant, Team

    if not Team.objects.filter(slug="bench").exists():
        _population(2_000, per_request=10, valid_days_ago=1)
    ExceptionRequest.objects.filter(pk__in=ExceptionRequest.objects.order_by("pk").values("pk")[:5]).update(
        ticket_ref="CHG-BENCH"
    )
    fill(events)  # events about exceptions.grant 0..N: the bench's grants are among them
    user, _ = get_user_model().objects.get_or_create(username="bench-auditor")
    user.groups.add(Group.objects.get_or_create(name=AUDITOR_GROUP)[0])
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    grant = Grant.objects.order_by("pk").first()
    assert grant is not None
    print(f"audit viewer: {events:,} events, {Grant.objects.count():,} grants of team bench")
    pages = (
        "/audit/",
        "/audit/?team=bench",
        "/audit/?ticket=CHG-BENCH",
        "/audit/?ticket=NO-SUCH-TICKET",
        f"/audit/objects/exceptions.grant/{grant.pk}/",
    )
    for url in pages:
        client.get(url)  # warm
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            for _ in range(3):
                response = client.get(url)
            elapsed = (time.perf_counter() - started) / 3
        assert response.status_code == 200, (url, response.status_code)
        print(f"{url:<44} {elapsed * 1000:7.0f} ms, {len(queries) // 3} queries per render")
