"""The scheduled jobs, executed by a real Celery worker over Redis."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from approvals.services import approve_request
from audit.models import AuditEvent
from exceptions import tasks
from exceptions.models import Grant


@pytest.mark.celery_worker
@pytest.mark.redis
@pytest.mark.postgres
def test_worker_expires_due_grants(celery_worker: Any, submit: Any, approver: Any) -> None:
    now = timezone.now()
    request = submit(destinations=[{"host": "a.example", "port": 443}, {"host": "b.example", "port": 443}])
    approve_request(actor=approver, request=request, now=now - timedelta(days=8))

    result = tasks.expire_due_grants.delay()
    assert result.get(timeout=60) == 2

    assert set(Grant.objects.values_list("status", flat=True)) == {"expired"}
    request.refresh_from_db()
    assert request.status == "expired"
    events = AuditEvent.objects.filter(action="grant.expired")
    assert events.count() == 2
    assert all(e.actor_kind == "system" and e.request_id.startswith("task-") for e in events)


@pytest.mark.celery_worker
@pytest.mark.redis
@pytest.mark.postgres
def test_worker_activates_scheduled_grants(celery_worker: Any, submit: Any, approver: Any) -> None:
    now = timezone.now()
    request = submit(desired_start=now + timedelta(minutes=1))
    [grant] = approve_request(actor=approver, request=request, now=now)
    assert grant.status == "scheduled"
    result = tasks.activate_due_grants.delay((now + timedelta(minutes=2)).isoformat())
    assert result.get(timeout=60) == 1
    grant.refresh_from_db()
    assert grant.status == "active"


@pytest.mark.django_db
def test_beat_schedules_live_in_the_database_with_the_defaults_seeded() -> None:
    from django_celery_beat.models import PeriodicTask

    tasks_by_name = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}
    assert {t.task for t in tasks_by_name.values()} >= {
        tasks.expire_due_grants.name,
        tasks.publish_bundle.name,
        tasks.send_expiry_reminders.name,
        "approvals.expire_stale_requests",
        "approvals.activate_due_requests",
        "approvals.remind_missing_approvals",
        "approvals.remind_breakglass_reviews",
        "audit.write_checkpoint",
        "outcomes.take_daily_snapshot",
        "outbox.relay",
        "traffic.stale_sweep",
    }
    relay = tasks_by_name["outbox-relay"]
    assert relay.interval is not None and relay.interval.every <= 5 and relay.interval.period == "seconds"
    safety_net = tasks_by_name["republish-bundle"]
    assert json.loads(safety_net.kwargs) == {"trigger": "schedule", "refresh": True}
    assert safety_net.queue == "publish" and safety_net.crontab is not None
    assert safety_net.crontab.minute == "*/5"
    assert tasks_by_name["send-expiry-reminders"].crontab.hour == "*"
