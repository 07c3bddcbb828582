"""The audit viewer over a large chain: the log page with the team and ticket filters and one
object's history, queries and time per render (the chain's status never walks the chain)."""

from __future__ import annotations

import time


def _ensure_history(grant_pk: int) -> int:
    """Give the measured grant a history if it has none; returns its number of events.

    ``fill`` numbers its objects from the chain's length when it starts, so in a reused
    bench database (earlier benchmarks reset the grants' ids and left events behind) the
    first grants have no events, and a history page with no events is a 404.
    """
    from django.db import transaction

    from audit.models import AuditEvent
    from audit.services import SYSTEM, PendingEvent, record_events

    events = AuditEvent.objects.filter(object_type="exceptions.grant", object_id=str(grant_pk))
    if not events.exists():
        with transaction.atomic():
            record_events(
                [
                    PendingEvent(
                        actor=SYSTEM,
                        action=action,
                        object_type="exceptions.grant",
                        object_id=str(grant_pk),
                        before=None,
                        after={"status": status},
                        reason="bench",
                    )
                    for action, status in (("grant.issued", "active"), ("grant.expired", "expired"))
                ]
            )
    return events.count()


def bench_audit_viewer(events: int = 300_000) -> None:
    """Target: query count constant whatever the chain's length; time printed."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from audit.models import AuditChainHead
    from bench.audit_export import fill
    from bench.traffic import _population
    from exceptions.access import AUDITOR_GROUP
    from exceptions.models import ExceptionRequest, Grant, Team

    if not Team.objects.filter(slug="bench").exists():
        _population(2_000, per_request=10, valid_days_ago=1)
    ExceptionRequest.objects.filter(pk__in=ExceptionRequest.objects.order_by("pk").values("pk")[:5]).update(
        ticket_ref="CHG-BENCH"
    )
    fill(events)
    user, _ = get_user_model().objects.get_or_create(username="bench-auditor")
    user.groups.add(Group.objects.get_or_create(name=AUDITOR_GROUP)[0])
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    grant = Grant.objects.order_by("pk").first()
    assert grant is not None
    history = _ensure_history(grant.pk)
    chain = AuditChainHead.objects.get(pk=1).last_seq  # fill only tops up: a reused database may hold more
    print(
        f"audit viewer: {chain:,} events, {Grant.objects.count():,} grants of team bench, "
        f"grant #{grant.pk} has {history} events"
    )
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
