"""Declare a change freeze, through the audited reference-data service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.reference import declare_freeze
from audit.services import SYSTEM


def _aware(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{option}: write an ISO time with its offset, e.g. 2026-12-20T00:00+01:00.") from exc
    if moment.tzinfo is None:
        raise CommandError(f"{option}: give the UTC offset (e.g. +01:00), so the freeze means one moment.")
    return moment


class Command(BaseCommand):
    help = (
        "Freeze go-lives, e.g. declare_freeze --start 2026-12-20T00:00+01:00 "
        "--end 2027-01-04T00:00+01:00 --env prod --reason 'Year end'"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", required=True)
        parser.add_argument("--end", required=True)
        parser.add_argument("--env", action="append", required=True, help="environment (repeat for several)")
        parser.add_argument("--reason", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            freeze = declare_freeze(
                actor=SYSTEM,
                starts_at=_aware(options["start"], "--start"),
                ends_at=_aware(options["end"], "--end"),
                environments=options["env"],
                reason=options["reason"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(self.style.SUCCESS(f"Freeze declared: {freeze}"))
