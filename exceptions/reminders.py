"""Reminders before grants expire: access expires like perishables, and owners hear first."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import Q
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


def _thresholds_due(grant: Grant, *, now: datetime, thresholds: list[int]) -> list[int]:
    """The thresholds ``grant`` is inside at ``now``, most urgent (fewest days) first."""
    return sorted(d for d in thresholds if grant.expires_at <= now + timedelta(days=d))


def send_expiry_reminders(*, now: datetime | None = None) -> int:
    """Remind owners of active grants reaching a threshold (default 7 days and 1 day); returns the mails queued.

    Each grant gets at most one mail per run, for the most urgent threshold it
    has reached: a grant first seen with half a day left hears "1 day", not
    "7 days" and "1 day" together. The thresholds it skipped are recorded as
    passed (``superseded_by``), so a later run never sends them. The reminder
    rows, one audit event per grant and its mail (an outbox row) commit
    together; the relay delivers the mails, retrying while SMTP is down.
    """
    now = now or timezone.now()
    thresholds = sorted(settings.EGRESS_REMINDER_DAYS)
    if not thresholds:
        return 0
    # A grant is due when it is inside some threshold it has no row for yet.
    unrecorded = Q()
    for days_before in thresholds:
        reminded = ExpiryReminder.objects.filter(days_before=days_before).values("grant_id")
        unrecorded |= Q(expires_at__lte=now + timedelta(days=days_before)) & ~Q(pk__in=reminded)
    with transaction.atomic():
        due = list(
            Grant.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(unrecorded, status=GrantStatus.ACTIVE, expires_at__gt=now)
            .filter(do_not_renew=False)  # the team lets it lapse: no reminders
            .select_related("request__requester", "workload__team")
            .prefetch_related("workload__team__members", "reminders")
            .order_by("id")
        )
        rows: list[ExpiryReminder] = []
        mailed: list[ExpiryReminder] = []
        events: list[PendingEvent] = []
        for grant in due:
            recorded = {r.days_before for r in grant.reminders.all()}
            reached = _thresholds_due(grant, now=now, thresholds=thresholds)
            most_urgent = reached[0]
            passed = [d for d in reached[1:] if d not in recorded]
            mail = None
            if most_urgent not in recorded:
                mail = ExpiryReminder(
                    grant=grant, days_before=most_urgent, sent_at=now, recipients=recipients_for(grant)
                )
                rows.append(mail)
                mailed.append(mail)
            # Passed thresholds name the most urgent one, whose mail went out now or earlier.
            rows += [ExpiryReminder(grant=grant, days_before=d, sent_at=now, superseded_by=most_urgent) for d in passed]
            events.append(
                PendingEvent(
                    actor=SYSTEM,
                    action="grant.reminder_sent" if mail else "grant.reminder_passed",
                    object_type="exceptions.grant",
                    object_id=str(grant.pk),
                    after={
                        "days_before": most_urgent,
                        "expires_at": grant.expires_at,
                        "recipients": mail.recipients if mail else [],
                        "passed": passed,
                    },
                )
            )
        if not rows:
            return 0
        ExpiryReminder.objects.bulk_create(rows)
        record_events(events)
        # Webhook event ids are per grant and threshold, so each mailed reminder is one event.
        emit(
            "grant.expiring",
            occurrences=(
                (f"grant:{r.grant.pk}:{r.days_before}d", {**grant_data(r.grant), "days_before": r.days_before})
                for r in mailed
            ),
        )
        for reminder in mailed:
            _queue_mail(reminder)
    return len(mailed)
