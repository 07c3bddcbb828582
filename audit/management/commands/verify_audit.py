from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoint_git import CheckpointRepoError
from audit.checkpoints import CHECKPOINT_ACTION, Checkpoint, InvalidCheckpoint, repository_checkpoints
from audit.export_verification import verify_export
from audit.models import AuditEvent
from audit.verification import VerificationResult, verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit log: every event's hash, seal and link, the sealed chain head, and the signed "
        "checkpoints in the policy repository. Fails closed: exits non-zero naming the first broken sequence "
        "number, the contradicted checkpoint, or what could not be checked (anchors unreachable, no audit key, "
        "an export without its signed header)."
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
            "--no-anchors",
            "--skip-repository",
            dest="no_anchors",
            action="store_true",
            help="an explicit local check: do not read checkpoints from the policy repository (an export: accept "
            "one without a signed checkpoint); warns that nothing outside the database vouches for the result. "
            "Seals are still checked.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        public_pems = [path.read_text(encoding="utf-8") for path in options["public_key"] or []]
        no_anchors: bool = options["no_anchors"]
        source: Path | None = options["export"]
        checkpoints: list[Checkpoint] = []
        forged: list[InvalidCheckpoint] = []
        if source:
            result = verify_export(source, public_pems=public_pems, require_anchor=not no_anchors)
            where = str(source)
        else:
            if not no_anchors:
                try:
                    checkpoints, forged = repository_checkpoints(public_pems=public_pems)
                except CheckpointRepoError as exc:
                    raise CommandError(
                        f"Audit anchors not checked: the checkpoints in the policy repository could not be read "
                        f"({exc}). Nothing outside the database vouches for the chain, so it is not reported intact; "
                        "run with --no-anchors for an explicit local check of hashes and seals."
                    ) from exc
            try:
                result = verify_chain(checkpoints=checkpoints)
            except ImproperlyConfigured as exc:
                raise CommandError(f"Audit seals not checked: {exc}") from exc
            where = "database"
        if no_anchors:
            self.stderr.write(
                self.style.WARNING(
                    "WARNING: --no-anchors: checkpoints in the policy repository were not checked; this result "
                    "rests on the database and the audit key alone."
                    if not source
                    else "WARNING: --no-anchors: an export without a signed checkpoint is checked against itself only."
                )
            )
        if where == "database" and not no_anchors and result.ok and not checkpoints and not forged:
            self._unanchored(result)
        self._report(result, where, checkpoints, forged)

    def _unanchored(self, result: VerificationResult) -> None:
        """No checkpoint in the repository: fine before the first one, a failure once one was written."""
        written = AuditEvent.objects.filter(action=CHECKPOINT_ACTION).order_by("seq").values_list("seq", flat=True)
        if first := written.first():
            raise CommandError(
                f"Audit anchors missing: event #{first} records a checkpoint written to the policy repository, "
                "but the repository holds none (removed, or another repository is configured)."
            )
        if result.checked:
            self.stdout.write(
                self.style.WARNING(
                    f"No checkpoint yet: nothing outside the database vouches for events #1 to #{result.checked} "
                    "(their seals do; the first checkpoint is written within the hour, or now with "
                    "`manage.py write_checkpoint`)."
                )
            )

    def _report(
        self, result: VerificationResult, where: str, checkpoints: list[Checkpoint], forged: list[InvalidCheckpoint]
    ) -> None:
        problems = [str(bad) for bad in forged]
        if not result.ok and result.broken_seq is None:
            problems.insert(0, f"Audit log not verified ({where}): {result.problem}.")
        elif not result.ok:
            problems.insert(
                0,
                f"Audit chain broken at sequence #{result.broken_seq}: {result.problem} "
                f"({result.checked} events verified before it; {where}).",
            )
        if problems:
            raise CommandError("\n".join(problems))
        anchored = f"; anchored by checkpoint #{result.anchored_seq}" if result.anchored_seq else ""
        counted = f", {len(checkpoints)} checkpoints checked" if checkpoints else ""
        sealed = ", every seal checked" if where == "database" else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {result.checked} events verified ({where}{counted}{sealed}{anchored})."
            )
        )
        for note in result.notes:
            self.stdout.write(note)
