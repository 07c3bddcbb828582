from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from audit.services import SystemActor
from exceptions.services.sealed_secrets import reencrypt_secrets
from foundation.encryption import SecretNotReadable


class Command(BaseCommand):
    help = (
        "Seal every TOTP seed and webhook secret again under EGRESS_SECRETS_KEY (key rotation: "
        "set the new key, list the old one in EGRESS_SECRETS_KEY_RETIRED, run this, then drop the old key)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = reencrypt_secrets(actor=SystemActor("manage.py reencrypt_secrets"))
        except (SecretNotReadable, ImproperlyConfigured) as exc:
            raise CommandError(f"Nothing was changed: {exc}") from exc
        summary = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in sorted(counts.items()))
        self.stdout.write(f"Sealed again under the current key: {summary or 'nothing registered'}.")
