from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import SYSTEM
from exceptions.models import ProviderRangeSet
from exceptions.services.provider_ranges import sync_provider_ranges


def configured_sources() -> dict[str, str]:
    pairs = (item.partition("=") for item in settings.EGRESS_PROVIDER_RANGE_SOURCES.split(",") if "=" in item)
    return {provider.strip(): source.strip() for provider, _, source in pairs}


class Command(BaseCommand):
    help = "Load a provider's published ranges (AWS ip-ranges.json, Google cloud.json) and keep a new version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", choices=ProviderRangeSet.Provider.values)
        parser.add_argument("--source", help="URL or path (default: EGRESS_PROVIDER_RANGE_SOURCES)")

    def handle(self, *args: Any, **options: Any) -> None:
        provider: str = options["provider"]
        source = options["source"] or configured_sources().get(provider)
        if not source:
            raise CommandError(f"No source for {provider}: pass --source or set EGRESS_PROVIDER_RANGE_SOURCES.")
        try:
            version = sync_provider_ranges(actor=SYSTEM, provider=provider, source=source)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if version is None:
            self.stdout.write(f"{provider}: unchanged (sync token already stored)")
        else:
            self.stdout.write(
                self.style.SUCCESS(f"{provider}: stored ranges {version.sync_token} ({len(version.services)} services)")
            )
