"""Register an egress gateway; the last line printed is its ingestion token (shown once)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import SYSTEM
from exceptions.choices import Environment
from exceptions.models import Team
from traffic.models import GatewayKind
from traffic.services.gateways import create_gateway


class Command(BaseCommand):
    help = "Register an egress gateway and print its ingestion token on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, choices=GatewayKind.values)
        parser.add_argument("--environment", required=True, choices=Environment.values)
        parser.add_argument("--team", help="slug of the owning team")
        parser.add_argument("--contact", default="")
        parser.add_argument("--slo", default="")
        parser.add_argument("--contract", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        team = None
        if options["team"]:
            team = Team.objects.filter(slug=options["team"]).first()
            if team is None:
                raise CommandError(f"No team with slug '{options['team']}'.")
        try:
            gateway, token = create_gateway(
                actor=SYSTEM,
                name=options["name"],
                kind=options["kind"],
                environment=options["environment"],
                owner_team=team,
                contact=options["contact"],
                slo=options["slo"],
                contract=options["contract"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(f"Gateway '{gateway.name}' ({gateway.get_kind_display()}, {gateway.environment}) registered.")
        self.stdout.write("Ingestion token (shown once; send it as 'Authorization: Bearer <token>'):")
        self.stdout.write(token)
