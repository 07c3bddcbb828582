"""The relay delivers due rows once, retries transient failures with backoff and parks the rest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from foundation.outbox.handlers import message_id
from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.relay import backoff, relay_due
from foundation.outbox.services import enqueue, enqueue_coalesced, enqueue_mail
from tests.outbox import handlers
from traffic.operations import retry_parked

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def test_handlers(settings: Any) -> None:
    settings.OUTBOX_HANDLERS = {
        **settings.OUTBOX_HANDLERS,
        "test.record": "tests.outbox.handlers.record",
        "test.unavailable": "tests.outbox.handlers.unavailable",
        "test.refused": "tests.outbox.handlers.refused",
        "test.crashes": "tests.outbox.handlers.crashes",
    }
    settings.OUTBOX_MAX_ATTEMPTS = 3
    handlers.DELIVERED.clear()


def queue(kind: str, key: str, **kwargs: Any) -> OutboxMessage:
    with transaction.atomic():
        return enqueue(kind=kind, payload={"n": key}, idempotency_key=key, **kwargs)


def test_due_rows_are_delivered_once_in_order_and_future_rows_wait() -> None:
    now = timezone.now()
    for key in ("a", "b", "c"):
        queue("test.record", key)
    later = queue("test.record", "later", available_at=now + timedelta(minutes=5))
    result = relay_due()
    assert result.delivered == 3 and handlers.DELIVERED == ["a", "b", "c"]
    assert relay_due().delivered == 0  # delivered rows are never delivered again
    assert OutboxMessage.objects.get(pk=later.pk).status == OutboxStatus.PENDING
    assert relay_due(now=now + timedelta(minutes=6)).delivered == 1
    assert handlers.DELIVERED == ["a", "b", "c", "later"]
    row = OutboxMessage.objects.get(idempotency_key="a")
    assert row.status == OutboxStatus.DELIVERED and row.attempts == 1 and row.delivered_at is not None


def test_mail_goes_through_the_mail_backend_with_a_message_id_from_its_key() -> None:
    with transaction.atomic():
        enqueue_mail(
            to=["alice@example.org"],
            subject="Expiring",
            template="emails/expiry_reminder",
            context={"days_before": 7, "renewal_url": "http://x/renew", "grant_url": "http://x/g"},
            idempotency_key="reminder:1:7",
        )
    assert relay_due().delivered == 1
    [sent] = mail.outbox
    assert sent.to == ["alice@example.org"] and "http://x/renew" in sent.body
    assert sent.extra_headers["Message-ID"] == message_id("reminder:1:7")


def test_transient_failure_backs_off_then_parks_after_the_attempt_budget() -> None:
    row = queue("test.unavailable", "w1")
    now = timezone.now()
    result = relay_due(now=now)
    assert result.retried == 1 and result.delivered == 0
    row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.attempts == 1
    assert "503" in row.last_error
    first_wait = row.available_at - now
    assert timedelta(seconds=4) <= first_wait <= timedelta(seconds=10)  # base 10 s, jitter 0.5-1.0
    assert relay_due(now=now + timedelta(seconds=1)).handled == 0  # not due during the backoff
    relay_due(now=now + timedelta(hours=1))
    result = relay_due(now=now + timedelta(hours=2))
    row.refresh_from_db()
    assert result.parked == 1 and row.status == OutboxStatus.PARKED and row.attempts == 3
    assert relay_due(now=now + timedelta(days=1)).handled == 0  # a parked row waits for a person


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(settings: Any) -> None:
    settings.OUTBOX_BACKOFF_BASE_SECONDS, settings.OUTBOX_BACKOFF_MAX_SECONDS = 10, 300
    waits = [backoff(n).total_seconds() for n in range(1, 8)]
    assert 5 <= waits[0] <= 10 and 20 <= waits[2] <= 40 and 150 <= waits[6] <= 300
    assert len({backoff(3).total_seconds() for _ in range(20)}) > 1  # jittered, not lock-step


def test_permanent_failure_and_unknown_kind_park_at_once() -> None:
    refused = queue("test.refused", "r1")
    unknown = queue("no.such.kind", "u1")
    crashing = queue("test.crashes", "c1")
    result = relay_due()
    assert result.parked == 2 and result.retried == 1  # an unexpected exception is retried like a transient one
    refused.refresh_from_db()
    unknown.refresh_from_db()
    crashing.refresh_from_db()
    assert refused.status == OutboxStatus.PARKED and "payload rejected" in refused.last_error
    assert unknown.status == OutboxStatus.PARKED and "OUTBOX_HANDLERS" in unknown.last_error
    assert crashing.status == OutboxStatus.PENDING and "KeyError" in crashing.last_error


def test_admin_retry_of_a_parked_row_is_audited_and_delivers(security_officer: Any, settings: Any) -> None:
    row = queue("test.refused", "r2")
    relay_due()
    settings.OUTBOX_HANDLERS["test.refused"] = "tests.outbox.handlers.record"  # the remote was fixed
    assert retry_parked(actor=security_officer, message_ids=[row.pk]) == 1
    assert retry_parked(actor=security_officer, message_ids=[row.pk]) == 0  # no longer parked
    event = AuditEvent.objects.get(action="outbox.retried")
    assert event.object_id == str(row.pk) and event.before["status"] == "parked"
    assert relay_due().delivered == 1 and handlers.DELIVERED == ["r2"]


def test_a_claimed_row_is_leased_and_due_again_when_its_relay_died(settings: Any) -> None:
    from foundation.outbox.relay import _claim

    row = queue("test.record", "lease")
    now = timezone.now()
    [claimed] = _claim(queue=None, now=now, lease_until=now + timedelta(seconds=600), limit=10)
    assert claimed.pk == row.pk  # ...and the relay that claimed it dies here
    assert relay_due(now=now + timedelta(seconds=60)).handled == 0  # leased: nobody else takes it
    assert relay_due(now=now + timedelta(seconds=601)).delivered == 1  # the lease ended: redelivered
    row.refresh_from_db()
    assert row.attempts == 2 and handlers.DELIVERED == ["lease"]


def test_a_publish_rearmed_during_its_delivery_is_delivered_again() -> None:
    from foundation.outbox.relay import _claim

    with transaction.atomic():
        enqueue_coalesced(kind="test.record", payload={}, idempotency_key="pub", delay_seconds=0)
    now = timezone.now() + timedelta(seconds=1)
    [claimed] = _claim(queue=None, now=now, lease_until=now + timedelta(seconds=600), limit=10)
    with transaction.atomic():  # a grant changes while the publish runs
        enqueue_coalesced(kind="test.record", payload={}, idempotency_key="pub", delay_seconds=0)
    from foundation.outbox.relay import _mark_delivered

    _mark_delivered([claimed], now=now)
    row = OutboxMessage.objects.get(idempotency_key="pub")
    assert row.status == OutboxStatus.PENDING  # the running publish may have missed the change
    assert relay_due(now=now + timedelta(seconds=1)).delivered == 1
    row.refresh_from_db()
    assert row.status == OutboxStatus.DELIVERED
    with transaction.atomic():  # a later change re-arms the delivered row
        enqueue_coalesced(kind="test.record", payload={"t": 2}, idempotency_key="pub", delay_seconds=0)
    row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.attempts == 0 and row.payload == {"t": 2}


def test_each_queue_relays_only_its_kinds(settings: Any) -> None:
    settings.OUTBOX_KIND_QUEUES = {"test.unavailable": "publish"}
    queue("test.record", "d1")
    queue("test.unavailable", "p1")
    assert relay_due(queue="publish").handled == 1
    assert handlers.DELIVERED == []
    assert relay_due(queue="default").delivered == 1 and handlers.DELIVERED == ["d1"]
    assert relay_due(queue="priority").handled == 0


def test_delivered_rows_are_pruned_after_the_keep_period_and_parked_rows_never(settings: Any) -> None:
    from foundation.outbox.relay import prune_delivered

    settings.OUTBOX_KEEP_DELIVERED_DAYS = 14
    queue("test.record", "old")
    queue("test.refused", "stuck")
    relay_due()
    now = timezone.now()
    assert prune_delivered(now=now + timedelta(days=13)) == 0
    assert prune_delivered(now=now + timedelta(days=15)) == 1
    assert list(OutboxMessage.objects.values_list("idempotency_key", flat=True)) == ["stuck"]


def tallies() -> dict[tuple[str, str], int]:
    from foundation.outbox.models import OutboxTally

    return {(t.kind, t.outcome): t.count for t in OutboxTally.objects.all()}


def test_every_outcome_is_counted_once_and_pruning_never_lowers_a_count(settings: Any) -> None:
    from foundation.outbox.relay import _claim, _mark_delivered, prune_delivered

    settings.OUTBOX_KEEP_DELIVERED_DAYS = 1
    queue("test.record", "a")
    queue("test.record", "b")
    queue("test.unavailable", "w")
    queue("test.refused", "r")
    now = timezone.now()
    relay_due(now=now)
    assert tallies() == {
        ("test.record", "delivered"): 2,
        ("test.unavailable", "retried"): 1,
        ("test.refused", "parked"): 1,
    }
    relay_due(now=now + timedelta(hours=1))  # the second attempt of three: retried again
    relay_due(now=now + timedelta(hours=2))  # the third: parked
    assert tallies()[("test.unavailable", "retried")] == 2
    assert tallies()[("test.unavailable", "parked")] == 1
    # A publish re-armed while it was being delivered is not counted as delivered by that relay.
    with transaction.atomic():
        enqueue_coalesced(kind="test.record", payload={}, idempotency_key="pub", delay_seconds=0)
    later = now + timedelta(hours=3)
    [claimed] = _claim(queue=None, now=later, lease_until=later + timedelta(seconds=600), limit=10)
    with transaction.atomic():
        enqueue_coalesced(kind="test.record", payload={}, idempotency_key="pub", delay_seconds=0)
    _mark_delivered([claimed], now=later)
    assert tallies()[("test.record", "delivered")] == 2
    assert relay_due(now=later + timedelta(seconds=1)).delivered == 1
    assert tallies()[("test.record", "delivered")] == 3
    assert prune_delivered(now=later + timedelta(days=2)) == 3
    assert tallies()[("test.record", "delivered")] == 3
