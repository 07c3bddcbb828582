"""The operations page: jobs, outbox backlog and parked rows, ingestion per gateway, a sweep on demand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from audit.models import AuditEvent
from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.services import enqueue
from traffic.jobs import record_failure, record_success

pytestmark = pytest.mark.django_db


@pytest.fixture
def schedules(db: Any) -> None:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    from foundation.outbox.schedules import seed

    seed(PeriodicTask, IntervalSchedule, CrontabSchedule)


class _Task:
    name = "exceptions.expire_due_grants"


def test_operations_page_shows_jobs_backlog_parked_rows_and_gateways(
    client: Client, security_officer: Any, schedules: None, gateway: Any
) -> None:
    with transaction.atomic():
        enqueue(kind="mail", payload={}, idempotency_key="m1")
        parked = enqueue(kind="webhook", payload={}, idempotency_key="w1")
    OutboxMessage.objects.filter(pk=parked.pk).update(status=OutboxStatus.PARKED, last_error="HTTP 410 Gone")
    record_failure(sender=_Task(), exception=RuntimeError("database unreachable"))
    client.force_login(security_officer)
    page = client.get("/operations/").content.decode()
    for expected in ("outbox-relay", "expire-due-grants", "database unreachable", "HTTP 410 Gone", "eu-proxy"):
        assert expected in page
    from django.utils import timezone

    from traffic.operations import periodic_jobs

    now = timezone.now()
    jobs = {job.name: job for job in periodic_jobs(now=now)}
    relay_next = jobs["outbox-relay"].next_run_at
    assert relay_next is not None and now <= relay_next <= now + timedelta(seconds=2)
    safety_next = jobs["republish-bundle"].next_run_at
    assert safety_next is not None and safety_next <= now + timedelta(minutes=5)
    record_success(sender=_Task())
    assert "database unreachable" not in client.get("/operations/").content.decode()  # it ran fine since

    response = client.post("/operations/outbox/retry/", {"message": [str(parked.pk)]})
    assert response.status_code == 302
    parked.refresh_from_db()
    assert parked.status == OutboxStatus.PENDING and parked.attempts == 0
    assert AuditEvent.objects.filter(action="outbox.retried", actor_id=security_officer.pk).exists()


def test_operations_are_closed_to_requesters(client: Client, requester: Any) -> None:
    client.force_login(requester)
    assert client.get("/operations/").status_code == 403
    assert client.post("/operations/sweep/").status_code == 403
    assert client.post("/operations/outbox/retry/", {"message": ["1"]}).status_code == 403


@pytest.mark.redis
def test_sweep_button_queues_the_sweep_task(client: Client, security_officer: Any) -> None:
    import redis
    from django.conf import settings

    from egress_portal.celery import app

    app.control.purge()
    client.force_login(security_officer)
    response = client.post("/operations/sweep/", follow=True)
    assert "Stale sweep queued" in response.content.decode()
    queued = redis.Redis.from_url(settings.REDIS_URL).lrange("default", 0, -1)
    assert any(b"traffic.stale_sweep" in message for message in queued)
    app.control.purge()


@pytest.mark.parametrize("value", ["²", "٤", "9" * 30, "-1"])
def test_retrying_with_a_message_id_that_is_not_a_number_says_so(
    client: Client, security_officer: Any, value: str
) -> None:
    client.force_login(security_officer)
    response = client.post("/operations/outbox/retry/", {"message": [value]}, follow=True)
    assert response.status_code == 200
    assert "id" in " ".join(str(m) for m in response.context["messages"])
    assert not AuditEvent.objects.filter(action="outbox.retried").exists()


def test_the_operations_page_has_a_plain_title_and_one_drift_section(client: Client, security_officer: Any) -> None:
    # A merge once put the drift section inside the title block: HTML in <title>, the section twice.
    client.force_login(security_officer)
    page = client.get("/operations/").content.decode()
    assert "<title>Operations · Egress Portal</title>" in page
    assert page.count('id="policy-drift"') == 1
