"""Side effects survive the failures of real parts: SMTP, Redis and a worker process."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from approvals.services import approve_request
from exceptions.models import BundlePublication, Grant
from exceptions.reminders import send_expiry_reminders
from exceptions.services.batches import expire_due_grants
from foundation.outbox.handlers import message_id
from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.relay import relay_due
from foundation.outbox.services import enqueue_mail
from tests.bundle.test_publications import remote_data
from tests.outbox.conftest import CeleryStack, SmtpHandler, ThrowawayRedis, wait_for


def grant_with_days_left(submit: Any, approver: Any, host: str, days: int) -> Grant:
    now = timezone.now()
    [grant] = approve_request(
        actor=approver,
        request=submit(destinations=[{"host": host, "port": 443}], lifetime=timedelta(days=10)),
        now=now - timedelta(days=10 - days),
    )
    # The approval's own notices are not what these tests follow: only the reminder is.
    OutboxMessage.objects.filter(kind="mail").delete()
    return grant


def remote_grant_ids(policy_repo: Path) -> set[int]:
    """The grant ids in the OPA data on the branch (every shard), or none before the first publish."""
    listed = subprocess.run(
        ["git", "--git-dir", str(policy_repo), "rev-parse", "--verify", "main"], capture_output=True
    )
    if listed.returncode != 0:
        return set()
    grants = remote_data(policy_repo)["egress"]["grants"]
    return {g["id"] for shard in grants.values() for hosts in shard.values() for gs in hosts.values() for g in gs}


@pytest.mark.postgres
def test_reminder_arrives_once_after_smtp_fails_then_recovers(
    smtp_server: SmtpHandler, submit: Any, approver: Any, requester: Any, transactional_db: Any
) -> None:
    grant = grant_with_days_left(submit, approver, "api.partner.example", days=5)
    assert send_expiry_reminders() == 1
    smtp_server.fail_next = 2  # the server says "try later" twice
    now = timezone.now()
    assert relay_due(now=now).retried == 1
    assert relay_due(now=now + timedelta(minutes=10)).retried == 1
    row = OutboxMessage.objects.get(kind="mail")
    assert row.status == OutboxStatus.PENDING and "451" in row.last_error and row.attempts == 2
    assert smtp_server.received == []
    assert relay_due(now=now + timedelta(hours=1)).delivered == 1
    assert relay_due(now=now + timedelta(hours=2)).handled == 0
    [mail] = smtp_server.received
    assert f"/requests/new/?renews={grant.pk}" in mail.get_payload()
    assert str(mail["Message-ID"]) == message_id(f"reminder:{grant.pk}:7")
    assert send_expiry_reminders() == 0  # the job itself never repeats a reminder


@pytest.mark.postgres
def test_smtp_refusing_a_recipient_for_good_parks_the_mail(smtp_server: SmtpHandler, transactional_db: Any) -> None:
    from django.db import transaction

    smtp_server.fail_next = 0
    with transaction.atomic():
        enqueue_mail(
            to=["x@example.org"], subject="s", template="emails/expiry_reminder", context={}, idempotency_key="k"
        )
    smtp_server.handle_DATA = _refuse  # type: ignore[method-assign]
    assert relay_due().parked == 1
    assert OutboxMessage.objects.get().last_error.startswith("SMTP 550")


async def _refuse(server: Any, session: Any, envelope: Any) -> str:
    return "550 5.1.1 No such user"


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
def test_changes_commit_while_redis_is_down_and_side_effects_arrive_once_after(
    celery_stack: CeleryStack,
    throwaway_redis: ThrowawayRedis,
    smtp_server: SmtpHandler,
    policy_repo: Path,
    submit: Any,
    approver: Any,
    requester: Any,
    settings: Any,
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    celery_stack.start_worker()
    celery_stack.start_beat()
    first = grant_with_days_left(submit, approver, "a.example", days=5)
    wait_for(lambda: first.pk in remote_grant_ids(policy_repo), timeout=60, message="first publish never arrived")

    throwaway_redis.stop()
    # With the broker gone, approvals, expiries and reminders still commit, each with its outbox rows.
    second = grant_with_days_left(submit, approver, "b.example", days=5)
    assert expire_due_grants(now=timezone.now() + timedelta(days=6)) == 2
    assert Grant.objects.filter(status="expired").count() == 2
    third = grant_with_days_left(submit, approver, "c.example", days=3)
    assert send_expiry_reminders() == 1
    pending = OutboxMessage.objects.filter(status=OutboxStatus.PENDING)
    # (and the audit checkpoint the first publish asked for, when it is not due yet)
    assert set(pending.values_list("kind", flat=True)) - {"audit.checkpoint"} == {"bundle.publish", "mail"}

    throwaway_redis.start()
    wait_for(
        lambda: not OutboxMessage.objects.exclude(status=OutboxStatus.DELIVERED).exists(),
        timeout=90,
        message="the outbox did not drain after Redis came back",
    )
    assert remote_grant_ids(policy_repo) == {third.pk}  # the latest state: a and b expired, c open
    assert second.pk not in remote_grant_ids(policy_repo)
    assert smtp_server.message_ids() == [message_id(f"reminder:{third.pk}:7")]  # once, not once per relay run
    assert BundlePublication.objects.filter(status="failed").count() == 0


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
def test_worker_killed_mid_delivery_leads_to_redelivery_not_loss(
    celery_stack: CeleryStack, smtp_server: SmtpHandler, submit: Any, approver: Any, requester: Any
) -> None:
    grant = grant_with_days_left(submit, approver, "api.partner.example", days=5)
    smtp_server.stall_next_rcpt = 6.0  # the first delivery hangs inside the SMTP conversation
    celery_stack.start_worker()
    celery_stack.start_beat()
    assert send_expiry_reminders() == 1
    assert smtp_server.rcpt_started.wait(timeout=60), "the worker never started delivering"
    celery_stack.kill_worker()
    row = OutboxMessage.objects.get(kind="mail")
    assert row.status == OutboxStatus.PENDING and row.attempts == 1  # claimed, not delivered, not lost

    celery_stack.start_worker()
    wait_for(
        lambda: OutboxMessage.objects.filter(kind="mail", status=OutboxStatus.DELIVERED).exists(),
        timeout=90,
        message="the mail of the killed worker was never redelivered",
    )
    row.refresh_from_db()
    assert row.attempts == 2
    assert smtp_server.message_ids() == [message_id(f"reminder:{grant.pk}:7")]
