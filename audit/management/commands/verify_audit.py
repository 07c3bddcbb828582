from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoint_git import CheckpointRepoError
from audit.checkpoints import Checkpoint, InvalidCheckpoint, repository_checkpoints
from audit.export_verification import verify_export
from audit.verification import verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain against the signed checkpoints in the policy repository; "
        "exits non-zero naming the first broken sequence number or contradicted checkpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", type=Path, help="verify an exported JSON-lines or CSV file instead")
        parser.add_argument(
            "--public-key",
            type=Path,
            action="append",
            help="PEM public key that signed the checkpoints (default: the portal's key); "
            "repeat it for the keys used before a rotation",
        )
        parser.add_argument(
            "--skip-repository", action="store_true", help="do not read checkpoints from the policy repository"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        public_pems = [path.read_text(encoding="utf-8") for path in options["public_key"] or []]
        source: Path | None = options["export"]
        if source:
            result = verify_export(source, public_pems=public_pems)
            where = str(source)
            checkpoints: list[Checkpoint] = []
            forged: list[InvalidCheckpoint] = []
        else:
            checkpoints, forged = [], []
            if not options["skip_repository"]:
                try:
                    checkpoints, forged = repository_checkpoints(public_pems=public_pems)
                except CheckpointRepoError as exc:
                    self.stderr.write(self.style.WARNING(f"Checkpoints not checked: {exc}"))
            result = verify_chain(checkpoints=checkpoints)
            where = "database"
        problems = [str(bad) for bad in forged]
        if not result.ok:
            problems.insert(
                0,
                f"Audit chain broken at sequence #{result.broken_seq}: {result.problem} "
                f"({result.checked} events verified before it; {where}).",
            )
        if problems:
            raise CommandError("\n".join(problems))
        anchored = f"; anchored by checkpoint #{result.anchored_seq}" if result.anchored_seq else ""
        counted = f", {len(checkpoints)} checkpoints checked" if checkpoints else ""
        self.stdout.write(
            self.style.SUCCESS(f"Audit chain intact: {result.checked} events verified ({where}{counted}{anchored}).")
        )
        for note in result.notes:
            self.stdout.write(note)
