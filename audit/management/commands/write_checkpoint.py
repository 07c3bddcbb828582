from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoint_git import CheckpointRepoError
from audit.checkpoints import CheckpointRefused, write_checkpoint


class Command(BaseCommand):
    help = "Sign the audit chain's head into the policy repository now (what the scheduled job does)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            checkpoint = write_checkpoint()
        except (CheckpointRepoError, CheckpointRefused) as exc:
            raise CommandError(f"No checkpoint written: {exc}") from exc
        if checkpoint is None:
            self.stdout.write("Nothing new since the last checkpoint.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Checkpoint #{checkpoint.seq} ({checkpoint.head_hash[:12]}) pushed as {checkpoint.path} "
                f"in {checkpoint.commit[:12]}."
            )
        )
