from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals.services import approve_request
from audit.models import AuditEvent
from exceptions.models import BundlePublication, ExceptionRequest
from outcomes.models import SnapshotValue
from outcomes.selectors import Filters, outcomes
from outcomes.services import percentile, take_daily_snapshot
from tests.factories import WorkloadFactory


def _approved_after(submit: Any, approver: Any, *, hours: float, decided: Any, **kwargs: Any) -> ExceptionRequest:
    request = submit(**kwargs)
    ExceptionRequest.objects.filter(pk=request.pk).update(
        created_at=decided - timedelta(hours=hours), submitted_at=decided - timedelta(hours=hours)
    )
    request.refresh_from_db()
    approve_request(actor=approver, request=request, now=decided)
    request.refresh_from_db()
    return request


@pytest.fixture
def scenario(
    submit: Any, approver: Any, prod_workload: Any, other_team: Any, outsider: Any, open_prod_window: Any
) -> Any:
    """Known answers, on the day of the returned noon. That day Payments got three approvals
    (waits 10 h, 2 h, 4 h), the first pushed 30 s after its approval and the others 3 s after
    theirs; Platform got one the day before.

    Active grants: Payments staging low (30 days), Payments staging wildcard medium (7 days),
    Payments prod medium (7 days), Platform dev low (30 days, from the day before).
    """
    # Noon of the latest day it has passed: every time below lies in one UTC day, and in the past.
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    if now > timezone.now() - timedelta(minutes=5):
        now -= timedelta(days=1)
    exact = [{"host": "api.partner.example", "port": 443}]
    early = now - timedelta(seconds=60)
    _approved_after(submit, approver, hours=10, decided=early, destinations=exact, lifetime=timedelta(days=30))
    _approved_after(submit, approver, hours=2, decided=now, destinations=[{"host": "*.files.example", "port": 443}])
    _approved_after(submit, approver, hours=4, decided=now, workload=prod_workload, destinations=exact)
    platform = WorkloadFactory(team=other_team, name="builder", environment="dev")
    _approved_after(
        submit,
        approver,
        hours=0.5,
        decided=now - timedelta(days=1),
        actor=outsider,
        workload=platform,
        destinations=[{"host": "pypi.example", "port": 443}],
        lifetime=timedelta(days=30),
    )
    for pushed, took_ms in ((now - timedelta(seconds=30), 1000), (now + timedelta(seconds=3), 500)):
        publication = BundlePublication.objects.create(status="published", trigger="test", duration_ms=took_ms)
        BundlePublication.objects.filter(pk=publication.pk).update(created_at=pushed)
    # Began before the approvals it could have carried: it carries none of them.
    missed = BundlePublication.objects.create(status="published", trigger="test", duration_ms=5000)
    BundlePublication.objects.filter(pk=missed.pk).update(created_at=now + timedelta(seconds=1))
    return now


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([10, 2, 4], 0.5) == 4
    assert percentile([10, 2, 4], 0.9) == pytest.approx(8.8)
    assert percentile([7], 0.9) == 7


@pytest.mark.django_db
def test_daily_snapshot_has_the_known_answers(scenario: Any) -> None:
    snapshot = take_daily_snapshot(now=scenario)
    event = AuditEvent.objects.get(action="metrics.snapshot_taken")
    assert event.object_id == str(snapshot.pk) and event.after["replaced"] is False
    today = scenario.date()
    payments = outcomes(filters=Filters(period=7, team="payments"), today=today)
    last = {chart.key: {s.label: s.values[-1] for s in chart.series} for chart in payments.charts}
    assert last["active"] == {"all tiers": 3, "low risk": 1, "medium risk": 2, "high risk": 0}
    assert last["wildcards"] == {"wildcard grants": 1}
    assert last["expiring"] == {"expiring soon": 2}
    # One approval completes each request's quorum here, so the first decision is the full approval.
    assert last["time_to_approve"] == {
        "approved p90": pytest.approx(8.8),
        "approved median": 4,
        "first decision p90": pytest.approx(8.8),
        "first decision median": 4,
    }
    assert last["policy_update"] == {
        "pushed p90": pytest.approx(24.6),
        "pushed median": 3,
        "in an engine p90": None,  # no engine reported a decision
        "in an engine median": None,
    }
    assert last["approvals"] == {"approved": 3}
    # Days before the first snapshot are gaps, not zeros.
    assert all(s.values[:-1] == [None] * 6 for chart in payments.charts for s in chart.series)

    staging = outcomes(filters=Filters(period=7, environment="staging"), today=today)
    last = {chart.key: {s.label: s.values[-1] for s in chart.series} for chart in staging.charts}
    assert last["active"]["all tiers"] == 2
    assert last["time_to_approve"]["approved p90"] == pytest.approx(9.2)
    assert last["time_to_approve"]["approved median"] == 6
    assert last["policy_update"]["pushed p90"] == pytest.approx(27.3)
    assert last["policy_update"]["pushed median"] == 16.5

    everything = outcomes(filters=Filters(period=30), today=today)
    assert everything.breakdown == [("payments", "prod", 1), ("payments", "staging", 2), ("platform", "dev", 1)]
    assert [s.values[-1] for s in everything.charts[0].series] == [4, 2, 2, 0]


@pytest.mark.django_db
def test_taking_the_snapshot_again_the_same_day_replaces_it(scenario: Any) -> None:
    take_daily_snapshot(now=scenario)
    rows = SnapshotValue.objects.count()
    take_daily_snapshot(now=scenario + timedelta(hours=1))
    assert SnapshotValue.objects.count() == rows
    assert AuditEvent.objects.filter(action="metrics.snapshot_taken").count() == 2


@pytest.mark.django_db
def test_metrics_page_draws_charts_with_tables_and_csv(client: Client, requester: Any, scenario: Any) -> None:
    take_daily_snapshot(now=scenario)
    client.force_login(requester)
    page = client.get("/outcomes/?period=7&team=payments").content.decode()
    assert page.count("<svg") == 11 and 'role="img"' in page
    assert "Time to approve (hours)</title>" in page and "approved median 4</text>" in page
    assert "<caption>Active grants by risk tier, grants per day" in page
    response = client.get("/outcomes/time_to_approve.csv?period=7&team=payments")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "day",
        "approved p90 (hours)",
        "approved median (hours)",
        "first decision p90 (hours)",
        "first decision median (hours)",
    ]
    assert len(rows) == 8 and rows[1][1:] == ["", "", "", ""]
    assert [scenario.date().isoformat(), "8.8", "4.0", "8.8", "4.0"] in rows


@pytest.mark.django_db
def test_metrics_page_explains_unknown_filters_instead_of_failing(client: Client, requester: Any) -> None:
    client.force_login(requester)
    response = client.get("/outcomes/?period=12&team=nobody&environment=moon")
    page = response.content.decode()
    assert response.status_code == 200
    assert "period must be one of 7, 30, 90 days; showing 30." in page
    assert "No team &#x27;nobody&#x27;; showing every team." in page
    assert client.get("/outcomes/nothing.csv").status_code == 404


@pytest.mark.django_db
def test_prometheus_histogram_of_time_to_approve_and_publish_age(client: Client, scenario: Any) -> None:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").content.decode())}
    samples = {
        (s.name, s.labels.get("tier"), s.labels.get("le")): s.value
        for s in families["egress_time_to_approve_seconds"].samples
    }
    # medium: 2 h and 4 h today; low: 10 h today and the Platform request (30 min) yesterday.
    assert samples[("egress_time_to_approve_seconds_count", "medium", None)] == 2
    assert samples[("egress_time_to_approve_seconds_bucket", "medium", "3600.0")] == 0
    assert samples[("egress_time_to_approve_seconds_bucket", "medium", "14400.0")] == 2
    assert samples[("egress_time_to_approve_seconds_sum", "medium", None)] == pytest.approx(6 * 3600)
    assert samples[("egress_time_to_approve_seconds_bucket", "low", "3600.0")] == 1
    assert samples[("egress_time_to_approve_seconds_bucket", "low", "86400.0")] == 2
    assert samples[("egress_time_to_approve_seconds_sum", "low", None)] == pytest.approx(10.5 * 3600)
    assert samples[("egress_time_to_approve_seconds_count", "high", None)] == 0
    assert "egress_bundle_last_success_age_seconds" in families
    outbox = {s.labels["status"]: s.value for s in families["egress_outbox_messages"].samples}
    from foundation.outbox.models import OutboxMessage, OutboxStatus

    # The scenario's decisions queued their mails; the gauge counts the rows as they are.
    expected = {status: float(OutboxMessage.objects.filter(status=status).count()) for status in OutboxStatus.values}
    assert expected["pending"] > 0
    assert outbox == expected
