"""Outbox rows live and die with the transaction of the change that causes them."""

from __future__ import annotations

import pytest
from django.db import transaction

from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.services import enqueue, enqueue_mail

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_outside_a_transaction_is_refused() -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        enqueue(kind="mail", payload={}, idempotency_key="k")
    assert not OutboxMessage.objects.exists()


def test_rolled_back_change_leaves_no_side_effect() -> None:
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        enqueue(kind="mail", payload={"to": ["a@example.com"]}, idempotency_key="k1")
        1 / 0  # noqa: B018 - the change fails after queuing its side effect
    assert not OutboxMessage.objects.exists()


def test_same_idempotency_key_keeps_one_row() -> None:
    with transaction.atomic():
        first = enqueue(kind="bundle.publish", payload={"trigger": "a"}, idempotency_key="publish:1")
        second = enqueue(kind="bundle.publish", payload={"trigger": "b"}, idempotency_key="publish:1")
    assert first.pk == second.pk
    assert OutboxMessage.objects.get().payload == {"trigger": "a"}
    assert first.status == OutboxStatus.PENDING


def test_mail_is_rendered_when_queued_and_skipped_without_recipients() -> None:
    with transaction.atomic():
        assert (
            enqueue_mail(to=["", ""], subject="s", template="emails/expiry_reminder", context={}, idempotency_key="m0")
            is None
        )
        row = enqueue_mail(
            to=["b@example.com", "a@example.com", "a@example.com"],
            subject="Expiring",
            template="emails/expiry_reminder",
            context={"days_before": 7, "renewal_url": "http://x/renew", "grant_url": "http://x/g"},
            idempotency_key="m1",
        )
    assert row is not None
    assert row.payload["to"] == ["a@example.com", "b@example.com"]
    assert "http://x/renew" in row.payload["text"]
