"""Create or replace a change window, through the audited reference-data service."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.reference import save_change_window
from audit.services import SYSTEM

DURATION = re.compile(r"^(\d+)([hm])$")


class Command(BaseCommand):
    help = (
        "Create or replace a change window, e.g. change_window 'Weekly prod' --env prod "
        "--rrule 'FREQ=WEEKLY;BYDAY=TU' --start '2026-01-06 02:00' --duration 4h --tz Europe/Berlin"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--env", action="append", required=True, help="environment (repeat for several)")
        parser.add_argument("--rrule", required=True, help="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=TU")
        parser.add_argument("--start", required=True, help="first start, local wall-clock time: 'YYYY-MM-DD HH:MM'")
        parser.add_argument("--duration", required=True, help="e.g. 4h or 90m")
        parser.add_argument("--tz", required=True, help="IANA time zone, e.g. Europe/Berlin")

    def handle(self, *args: Any, **options: Any) -> None:
        found = DURATION.match(options["duration"])
        if not found:
            raise CommandError("--duration: write it as 4h or 90m.")
        amount = int(found.group(1))
        duration = timedelta(hours=amount) if found.group(2) == "h" else timedelta(minutes=amount)
        try:
            start = datetime.strptime(options["start"], "%Y-%m-%d %H:%M")
        except ValueError as exc:
            raise CommandError("--start: write it as 'YYYY-MM-DD HH:MM' (local time in --tz).") from exc
        try:
            window = save_change_window(
                actor=SYSTEM,
                name=options["name"],
                environments=options["env"],
                rrule=options["rrule"],
                first_start_local=start,
                duration=duration,
                time_zone=options["tz"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(self.style.SUCCESS(f"Change window {window.name}: {window.describe()}"))
