from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bundle.policy_repository import PublishError
from exceptions.services.publications import publish_bundle


class Command(BaseCommand):
    help = "Publish the policy bundle to POLICY_REPO_URL now (a commit only if something changed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--refresh", action="store_true", help="fetch the branch first")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            publication = publish_bundle(trigger="manage.py publish_bundle", refresh=options["refresh"])
        except PublishError as exc:
            raise CommandError(f"Publish failed: {exc}") from exc
        detail = (
            f" as {publication.commit[:12]} (+{publication.added} -{publication.removed})" if publication.commit else ""
        )
        self.stdout.write(
            self.style.SUCCESS(f"{publication.get_status_display()}: bundle {publication.revision}{detail}")
        )
