from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoint_git import CheckpointRepoError
from audit.checkpoints import Checkpoint, repository_checkpoints
from audit.services import SealRefused, seal_history


class Command(BaseCommand):
    help = (
        "Seal the audit events written before seals existed (once, after the upgrade; as the database owner). "
        "Checks the chain and the checkpoints in the policy repository first and refuses a chain that does not hold."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-anchors",
            action="store_true",
            help="seal without reading the checkpoints in the policy repository (warned about; every event is then "
            "unanchored and needs --vouch-unanchored)",
        )
        parser.add_argument(
            "--vouch-unanchored",
            action="store_true",
            help=(
                "also seal the unsealed events after the newest checkpoint, on your word (recorded in the audit event)"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoints: list[Checkpoint] = []
        if options["no_anchors"]:
            self.stderr.write(self.style.WARNING("WARNING: --no-anchors: sealing without checking the checkpoints."))
        else:
            try:
                checkpoints, forged = repository_checkpoints()
            except CheckpointRepoError as exc:
                raise CommandError(
                    f"Not sealed: the checkpoints in the policy repository could not be read ({exc}); "
                    "--no-anchors seals without them."
                ) from exc
            if forged:
                raise CommandError("Not sealed:\n" + "\n".join(str(bad) for bad in forged))
        try:
            if options["vouch_unanchored"]:
                self.stderr.write(
                    self.style.WARNING(
                        "WARNING: --vouch-unanchored: events after the newest checkpoint are sealed on your word; "
                        "the audit event records that you did."
                    )
                )
            sealed = seal_history(checkpoints=checkpoints, vouch_unanchored=options["vouch_unanchored"])
        except (SealRefused, ImproperlyConfigured) as exc:
            raise CommandError(f"Not sealed: {exc}") from exc
        if sealed:
            self.stdout.write(self.style.SUCCESS(f"Sealed {sealed} audit events written before seals existed."))
        else:
            self.stdout.write("Every audit event is sealed already.")
