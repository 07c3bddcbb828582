"""Reminders before grants expire: access expires like perishables, and owners hear first."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.services import SYSTEM, PendingEvent, record_events
from exceptions.choices import GrantStatus
from exceptions.events import emit, grant_data
from exceptions.models import ExpiryReminder, Grant
from foundation.outbox.services import enqueue_mail


def recipients_for(grant: Grant) -> list[str]:
    """The requester and the owning team, by e-mail address (team members prefetched by the caller)."""
    addresses = {grant.request.requester.email, *(member.email for member in grant.workload.team.members.all())}
    return sorted(a for a in addresses if a)


def renewal_url(grant: Grant) -> str:
    query = urlencode({"renews": grant.pk})
    return f"{settings.EGRESS_BASE_URL.rstrip('/')}{reverse('request-create')}?{query}"


def _queue_mail(reminder: ExpiryReminder) -> None:
    """The reminder mail, as an outbox row in the transaction that records the reminder."""
    grant = reminder.grant
    context = {
        "grant": grant,
        "days_before": reminder.days_before,
        "renewal_url": renewal_url(grant),
        "grant_url": f"{settings.EGRESS_BASE_URL.rstrip('/')}{grant.get_absolute_url()}",
    }
    enqueue_mail(
        to=reminder.recipients,
        subject=f"[Egress Portal] {grant.host}:{grant.port} for {grant.workload.name} expires "
        f"{grant.expires_at:%Y-%m-%d %H:%M} UTC",
        template="emails/expiry_reminder",
        context=context,
        idempotency_key=f"reminder:{grant.pk}:{reminder.days_before}",
    )


def send_expiry_reminders(*, now: datetime | None = None) -> int:
    """Remind owners of active grants reaching each threshold (default 7 days and 1 day), once each.

    The reminder rows, their audit events and their mails (outbox rows) commit
    together; the relay delivers the mails, retrying while SMTP is down.
    """
    now = now or timezone.now()
    sent = 0
    for days_before in settings.EGRESS_REMINDER_DAYS:
        with transaction.atomic():
            due = list(
                Grant.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    status=GrantStatus.ACTIVE,
                    expires_at__gt=now,
                    expires_at__lte=now + timedelta(days=days_before),
                    do_not_renew=False,  # the team lets it lapse: no reminders
                )
                .exclude(reminders__days_before=days_before)
                .select_related("request__requester", "workload__team")
                .prefetch_related("workload__team__members")
                .order_by("id")
            )
            if not due:
                continue
            reminders = ExpiryReminder.objects.bulk_create(
                ExpiryReminder(grant=g, days_before=days_before, sent_at=now, recipients=recipients_for(g)) for g in due
            )
            record_events(
                [
                    PendingEvent(
                        actor=SYSTEM,
                        action="grant.reminder_sent",
                        object_type="exceptions.grant",
                        object_id=str(r.grant.pk),
                        after={
                            "days_before": days_before,
                            "expires_at": r.grant.expires_at,
                            "recipients": r.recipients,
                        },
                    )
                    for r in reminders
                ]
            )
            # Webhook event ids are per grant and threshold, so each reminder is one event.
            emit(
                "grant.expiring",
                occurrences=(
                    (f"grant:{g.pk}:{days_before}d", {**grant_data(g), "days_before": days_before}) for g in due
                ),
            )
            for reminder in reminders:
                _queue_mail(reminder)
            sent += len(due)
    return sent
