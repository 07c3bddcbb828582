"""Revoke every open grant of a workload that leaves (decommissioned, or its partner offboarded).

For an inventory sync or an operator: ``manage.py offboard_workload --identity ID --reason "..."``.
Each grant is revoked through the lifecycle writer with kind ``offboarded`` (audit event,
``grant.revoked`` webhook, publish), as the system; the reason is what the owning team reads.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import SYSTEM
from exceptions.models import Workload
from exceptions.services.grants import offboard_workload


class Command(BaseCommand):
    help = "Revoke every open grant of a workload that leaves (kind: offboarded)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--identity", required=True, help="The workload's identity, exactly as registered")
        parser.add_argument("--reason", required=True, help="Why it leaves; the owning team reads it")

    def handle(self, *args: Any, **options: Any) -> None:
        workload = Workload.objects.filter(identity=options["identity"]).first()
        if workload is None:
            raise CommandError(f"No workload has the identity {options['identity']!r}; nothing was revoked.")
        try:
            revoked = offboard_workload(actor=SYSTEM, workload=workload, reason=options["reason"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        ids = ", ".join(f"#{g.pk}" for g in revoked) or "none were open"
        self.stdout.write(f"Workload {workload.identity}: {len(revoked)} grant(s) revoked as offboarded ({ids}).")
