"""Exit 0 while beat is alive: the outbox relay schedule ran recently (the beat container's health check)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django_celery_beat.models import PeriodicTask


class Command(BaseCommand):
    help = "Fail when the outbox relay has not been scheduled within --max-age seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-age", type=int, default=120)

    def handle(self, *args: Any, **options: Any) -> None:
        last = PeriodicTask.objects.filter(name="outbox-relay").values_list("last_run_at", flat=True).first()
        if last is None or timezone.now() - last > timedelta(seconds=options["max_age"]):
            raise CommandError(f"beat has not scheduled the outbox relay since {last}")
        self.stdout.write(f"beat ok: outbox relay last scheduled at {last:%Y-%m-%d %H:%M:%S}")
