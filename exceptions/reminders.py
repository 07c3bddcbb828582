"""Reminders before grants expire: access expires like perishables, and owners hear first."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from audit.services import SYSTEM, PendingEvent, record_events
from exceptions.choices import GrantStatus
from exceptions.models import ExpiryReminder, Grant


def recipients_for(grant: Grant) -> list[str]:
    """The requester and the owning team, by e-mail address."""
    addresses = {grant.request.requester.email}
    addresses.update(grant.workload.team.members.exclude(email="").values_list("email", flat=True))
    return sorted(a for a in addresses if a)


def renewal_url(grant: Grant) -> str:
    query = urlencode({"renews": grant.pk})
    return f"{settings.EGRESS_BASE_URL.rstrip('/')}{reverse('request-create')}?{query}"


def _send(grant_ids: Iterable[int], days_before: int) -> None:
    for grant in Grant.objects.filter(pk__in=list(grant_ids)).select_related("request__requester", "workload__team"):
        context = {
            "grant": grant,
            "days_before": days_before,
            "renewal_url": renewal_url(grant),
            "grant_url": f"{settings.EGRESS_BASE_URL.rstrip('/')}{grant.get_absolute_url()}",
        }
        send_mail(
            subject=f"[Egress Portal] {grant.host}:{grant.port} for {grant.workload.name} expires "
            f"{grant.expires_at:%Y-%m-%d %H:%M} UTC",
            message=render_to_string("emails/expiry_reminder.txt", context),
            from_email=None,
            recipient_list=recipients_for(grant),
            fail_silently=False,
        )


def send_expiry_reminders(*, now: datetime | None = None) -> int:
    """Remind owners of active grants reaching each threshold (default 7 days and 1 day), once each.

    The reminder rows and their audit events commit together; the e-mails go out after the commit.
    """
    now = now or timezone.now()
    sent = 0
    for days_before in settings.EGRESS_REMINDER_DAYS:
        with transaction.atomic():
            due = list(
                Grant.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    status=GrantStatus.ACTIVE, expires_at__gt=now, expires_at__lte=now + timedelta(days=days_before)
                )
                .exclude(reminders__days_before=days_before)
                .select_related("request__requester", "workload__team")
                .order_by("id")
            )
            if not due:
                continue
            ExpiryReminder.objects.bulk_create(
                ExpiryReminder(grant=g, days_before=days_before, sent_at=now, recipients=recipients_for(g)) for g in due
            )
            record_events(
                [
                    PendingEvent(
                        actor=SYSTEM,
                        action="grant.reminder_sent",
                        object_type="exceptions.grant",
                        object_id=str(g.pk),
                        after={"days_before": days_before, "expires_at": g.expires_at, "recipients": recipients_for(g)},
                    )
                    for g in due
                ]
            )
            ids = [g.pk for g in due]
            transaction.on_commit(lambda ids=ids, days=days_before: _send(ids, days))  # type: ignore[misc]
            sent += len(due)
    return sent
