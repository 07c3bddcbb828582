from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from approvals.services import approve_request
from audit.models import AuditEvent
from audit.verification import verify_chain
from exceptions.models import ExpiryReminder
from exceptions.reminders import send_expiry_reminders
from foundation.outbox.models import OutboxMessage
from foundation.outbox.relay import relay_due

pytestmark = pytest.mark.django_db


def test_owners_are_reminded_once_per_threshold(submit: Any, approver: Any, requester: Any, teammate: Any) -> None:
    requester.email, teammate.email = "alice@example.org", "dave@example.org"
    requester.save()
    teammate.save()
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=10)), now=now)
    relay_due()  # the approval's own notifications go first
    mail.outbox.clear()

    assert send_expiry_reminders(now=now + timedelta(days=2)) == 0  # 8 days left
    assert send_expiry_reminders(now=now + timedelta(days=4)) == 1  # 6 days left: the 7-day reminder
    assert send_expiry_reminders(now=now + timedelta(days=5)) == 0  # already sent
    assert send_expiry_reminders(now=now + timedelta(days=9, hours=12)) == 1  # the 1-day reminder
    assert mail.outbox == []  # nothing is sent inside the job: the mails are outbox rows
    reminders = OutboxMessage.objects.filter(idempotency_key__startswith="reminder:")
    assert sorted(reminders.values_list("idempotency_key", flat=True)) == [
        f"reminder:{grant.pk}:1",
        f"reminder:{grant.pk}:7",
    ]
    assert relay_due().delivered == 2
    assert relay_due().delivered == 0
    assert sorted(ExpiryReminder.objects.values_list("days_before", flat=True)) == [1, 7]
    assert len(mail.outbox) == 2
    message = mail.outbox[0]
    assert sorted(message.to) == ["alice@example.org", "dave@example.org"]
    assert "api.partner.example:443" in message.subject
    assert f"/requests/new/?renews={grant.pk}" in message.body
    assert AuditEvent.objects.filter(action="grant.reminder_sent").count() == 2
    assert verify_chain().ok


def test_expired_and_revoked_grants_are_not_reminded(submit: Any, approver: Any) -> None:
    now = timezone.now()
    approve_request(actor=approver, request=submit(lifetime=timedelta(days=1)), now=now - timedelta(days=2))
    assert send_expiry_reminders(now=now) == 0
    assert not ExpiryReminder.objects.exists()
