from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from foundation.signing import algorithm, key_id, public_key_pem


class Command(BaseCommand):
    help = "Print the OPA configuration that verifies the portal's bundle signatures (public key only)."

    def handle(self, *args: Any, **options: Any) -> None:
        pem = "\n".join(f"      {line}" for line in public_key_pem().strip().splitlines())
        self.stdout.write(
            "# OPA config: verify the egress bundle with the portal's public key\n"
            f"# (JWT kid {key_id()})\n"
            "keys:\n"
            "  egress-portal:\n"
            f"    algorithm: {algorithm()}\n"
            "    key: |\n"
            f"{pem}\n"
            "bundles:\n"
            "  egress:\n"
            "    signing:\n"
            "      keyid: egress-portal\n"
        )
