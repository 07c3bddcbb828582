from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from exceptions.services.publications import current_bundle


class Command(BaseCommand):
    help = "Compile the policy bundle from the current grants and write the tree to --out."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        bundle = current_bundle()
        out: Path = options["out"]
        for path, data in bundle.files.items():
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.stdout.write(
            self.style.SUCCESS(
                f"Bundle {bundle.revision}: {bundle.grant_count} grants, {len(bundle.files)} files in {out}"
            )
        )
