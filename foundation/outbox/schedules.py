"""The default periodic jobs, seeded once into django-celery-beat's tables.

Seeded (created when missing, never overwritten) by a migration, so an operator's
change in the admin survives restarts and deployments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    every_seconds: int | None = None
    cron: dict[str, str] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    # Runs that waited longer than this in the queue are dropped: the next one is on its way.
    expire_seconds: int | None = None
    description: str = ""


def _relay(queue: str, description: str) -> DefaultSchedule:
    name = "outbox-relay" if queue == "default" else f"outbox-relay-{queue}"
    return DefaultSchedule(
        name=name,
        task="outbox.relay",
        every_seconds=2,
        kwargs={"queue": queue},
        queue=queue,
        expire_seconds=10,
        description=description,
    )


DEFAULT_SCHEDULES: tuple[DefaultSchedule, ...] = (
    _relay("default", "Deliver due side effects (mail, webhooks)."),
    _relay("publish", "Deliver due bundle publishes."),
    _relay("priority", "Deliver due priority side effects (break-glass broadcasts)."),
    # Moves go-lives caught by a freeze past it, then activates the scheduled grants that are due.
    DefaultSchedule(
        name="activate-due-requests", task="approvals.activate_due_requests", cron={"minute": "*"}, expire_seconds=50
    ),
    DefaultSchedule(
        name="expire-due-grants", task="exceptions.expire_due_grants", cron={"minute": "*"}, expire_seconds=50
    ),
    DefaultSchedule(name="send-expiry-reminders", task="exceptions.send_expiry_reminders", cron={"minute": "5"}),
    DefaultSchedule(name="stale-grant-sweep", task="traffic.stale_sweep", cron={"minute": "15", "hour": "3"}),
    DefaultSchedule(name="prune-outbox", task="outbox.prune", cron={"minute": "30", "hour": "3"}),
    DefaultSchedule(name="prune-ingest-digests", task="traffic.prune", cron={"minute": "45", "hour": "3"}),
    DefaultSchedule(name="expire-stale-requests", task="approvals.expire_stale_requests", cron={"minute": "15"}),
    DefaultSchedule(
        name="remind-missing-approvals", task="approvals.remind_missing_approvals", cron={"minute": "30", "hour": "8"}
    ),
    # Issue 9: unreviewed break-glass uses are reminded (each at most every EGRESS_BREAKGLASS_REMINDER_HOURS).
    DefaultSchedule(
        name="remind-breakglass-reviews", task="approvals.remind_breakglass_reviews", cron={"minute": "45"}
    ),
    # At least hourly; a checkpoint also follows every publish that changed the bundle.
    DefaultSchedule(name="audit-checkpoint", task="audit.write_checkpoint", cron={"minute": "7"}),
    DefaultSchedule(name="outcome-snapshot", task="outcomes.take_daily_snapshot", cron={"minute": "59"}),
    # Issue 11: each provider's range file (EGRESS_PROVIDER_RANGE_SOURCES; a provider
    # without a source is skipped); a changed file republishes without a new approval.
    *(
        DefaultSchedule(
            name=f"sync-provider-ranges-{provider}",
            task="exceptions.sync_provider_ranges",
            cron={"minute": minute},
            kwargs={"provider": provider},
            expire_seconds=1800,
            description=f"Load {provider}'s published ranges; republish when they changed.",
        )
        for provider, minute in (("aws", "20"), ("google", "25"))
    ),
    # Idempotency keys are kept EGRESS_IDEMPOTENCY_HOURS (24 h); older records go hourly.
    DefaultSchedule(name="purge-idempotency-records", task="api.purge_idempotency_records", cron={"minute": "40"}),
    # The safety net: whatever was missed (a failed push, a branch moved by hand)
    # is carried by the next full publish, which fetches the branch first.
    DefaultSchedule(
        name="republish-bundle",
        task="exceptions.publish_bundle",
        cron={"minute": "*/5"},
        kwargs={"trigger": "schedule", "refresh": True},
        queue="publish",
        expire_seconds=240,
    ),
)


def seed(periodic_task: Any, interval_schedule: Any, crontab_schedule: Any) -> int:
    """Create the default schedules that do not exist yet (by name); return how many were created.

    Takes the model classes so a migration can pass its historical models.
    """
    import json

    created = 0
    for entry in DEFAULT_SCHEDULES:
        if periodic_task.objects.filter(name=entry.name).exists():
            continue
        timing: dict[str, Any]
        if entry.every_seconds is not None:
            interval, _ = interval_schedule.objects.get_or_create(every=entry.every_seconds, period="seconds")
            timing = {"interval": interval}
        else:
            cron = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
            cron.update(entry.cron or {})
            crontab, _ = crontab_schedule.objects.get_or_create(timezone="UTC", **cron)
            timing = {"crontab": crontab}
        periodic_task.objects.create(
            name=entry.name,
            task=entry.task,
            kwargs=json.dumps(entry.kwargs),
            queue=entry.queue,
            expire_seconds=entry.expire_seconds,
            description=entry.description,
            **timing,
        )
        created += 1
    return created
