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


# Threshold sets: the one the settings define, and longer ones an operator may configure.
THRESHOLD_SETS = [None, [14, 7, 1], [30, 14, 7, 3, 1]]


@pytest.mark.parametrize("configured", THRESHOLD_SETS, ids=["settings", "14-7-1", "30-14-7-3-1"])
def test_a_grant_first_seen_inside_several_thresholds_gets_one_mail_for_the_most_urgent(
    settings: Any, configured: list[int] | None, submit: Any, approver: Any, requester: Any
) -> None:
    if configured is not None:
        settings.EGRESS_REMINDER_DAYS = configured
    thresholds = sorted(settings.EGRESS_REMINDER_DAYS)  # most urgent (fewest days) first
    assert len(thresholds) >= 2, "the settings define several thresholds"
    requester.email = "alice@example.org"
    requester.save()
    approved_at = timezone.now()
    first_run = approved_at + timedelta(hours=1)
    # One grant first seen inside each suffix of the thresholds (thresholds[i:] and nothing more
    # urgent), once just inside the threshold and once exactly on it; one grant inside none.
    remaining = {}
    for i, days in enumerate(thresholds):
        remaining[f"in{days}.inside.example"] = (timedelta(days=days) - timedelta(hours=1), thresholds[i:])
        remaining[f"on{days}.edge.example"] = (timedelta(days=days), thresholds[i:])
    remaining["outside.example"] = (timedelta(days=thresholds[-1] + 1), [])
    grants = {}
    for host, (left, _) in remaining.items():
        request = submit(
            destinations=[{"host": host, "port": 443, "protocol": "tcp"}], lifetime=left + timedelta(hours=1)
        )
        [grants[host]] = approve_request(actor=approver, request=request, now=approved_at)
        assert grants[host].expires_at == first_run + left
    relay_due()
    mail.outbox.clear()

    mailed_first = send_expiry_reminders(now=first_run)

    assert mailed_first == sum(1 for _, inside in remaining.values() if inside)
    assert relay_due().delivered == mailed_first
    by_host = {host: [m for m in mail.outbox if f"{host}:443" in m.subject] for host in remaining}
    for host, (_, inside) in remaining.items():
        grant = grants[host]
        assert len(by_host[host]) == (1 if inside else 0), host
        rows = {r.days_before: r for r in ExpiryReminder.objects.filter(grant=grant)}
        assert sorted(rows) == sorted(inside), host  # every threshold reached is recorded, mailed or passed
        if inside:
            most_urgent, *passed = inside
            assert rows[most_urgent].superseded_by is None and rows[most_urgent].recipients == ["alice@example.org"]
            assert all(rows[d].superseded_by == most_urgent and rows[d].recipients == [] for d in passed), host
            [event] = AuditEvent.objects.filter(action="grant.reminder_sent", object_id=str(grant.pk))
            assert event.after["days_before"] == most_urgent and event.after["passed"] == passed
    assert OutboxMessage.objects.filter(idempotency_key__startswith="reminder:").count() == mailed_first

    # A second run, at once or an hour later, sends nothing: the passed thresholds are never sent late.
    assert send_expiry_reminders(now=first_run) == 0
    assert send_expiry_reminders(now=first_run + timedelta(minutes=59)) == 0
    assert relay_due().delivered == 0

    # Walking the clock to the last expiry, each grant hears each more urgent threshold exactly once.
    mail.outbox.clear()
    heard: dict[str, list[int]] = {host: [] for host in remaining}
    clock = first_run
    last = max(g.expires_at for g in grants.values())
    while clock < last:
        clock += timedelta(hours=6)
        before = set(OutboxMessage.objects.filter(idempotency_key__startswith="reminder:").values_list("pk", flat=True))
        send_expiry_reminders(now=clock)
        for key in (
            OutboxMessage.objects.filter(idempotency_key__startswith="reminder:")
            .exclude(pk__in=before)
            .values_list("idempotency_key", flat=True)
        ):
            _, grant_pk, days = key.split(":")
            [host] = [h for h, g in grants.items() if g.pk == int(grant_pk)]
            heard[host].append(int(days))
    for host, (_, inside) in remaining.items():
        assert heard[host] == [d for d in reversed(thresholds) if d not in inside], host
    assert relay_due().delivered == sum(len(h) for h in heard.values()) == len(mail.outbox)
    assert verify_chain().ok


def test_a_threshold_added_later_is_recorded_as_passed_without_a_mail(
    settings: Any, submit: Any, approver: Any
) -> None:
    """An operator adds a 3-day threshold after a grant already heard "1 day": no late "3 days" mail."""
    settings.EGRESS_REMINDER_DAYS = [7, 1]
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=2)), now=now)
    assert send_expiry_reminders(now=now + timedelta(days=1, hours=12)) == 1  # the 1-day mail (7 passed)
    settings.EGRESS_REMINDER_DAYS = [7, 3, 1]
    relay_due()
    mail.outbox.clear()

    assert send_expiry_reminders(now=now + timedelta(days=1, hours=13)) == 0

    assert relay_due().delivered == 0
    passed = ExpiryReminder.objects.get(grant=grant, days_before=3)
    assert passed.superseded_by == 1 and passed.recipients == []
    [event] = AuditEvent.objects.filter(action="grant.reminder_passed", object_id=str(grant.pk))
    assert event.after["passed"] == [3]
    assert send_expiry_reminders(now=now + timedelta(days=1, hours=14)) == 0
