from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.verification import verify_chain, verify_export


class Command(BaseCommand):
    help = "Verify the audit hash chain; exits non-zero naming the first broken sequence number."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", type=Path, help="verify an exported JSON-lines file instead of the database")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["export"]
        result = verify_export(source) if source else verify_chain()
        where = str(source) if source else "database"
        if not result.ok:
            raise CommandError(
                f"Audit chain broken at sequence #{result.broken_seq}: {result.problem} "
                f"({result.checked} events verified before it; {where})."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {result.checked} events verified ({where})."))
