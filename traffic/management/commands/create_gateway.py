"""Register an egress gateway; the last line printed is its ingestion token (shown once)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import SYSTEM
from exceptions.choices import Environment
from exceptions.models import Team
from traffic.models import GatewayKind
from traffic.scope import GatewayScope
from traffic.services.gateways import create_gateway


class Command(BaseCommand):
    help = (
        "Register an egress gateway, bound to what it can see (its environments and, optionally, "
        "teams, namespaces and identity prefixes), and print its ingestion token on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, choices=GatewayKind.values)
        parser.add_argument(
            "--environment",
            required=True,
            action="append",
            choices=Environment.values,
            help="an environment whose workloads it sees (repeat for more; the first is its own)",
        )
        parser.add_argument(
            "--team",
            action="append",
            default=[],
            help="narrow the scope to this team's workloads (slug; repeat for more). "
            "With one --team and no --owner-team, that team also owns the gateway.",
        )
        parser.add_argument("--namespace", action="append", default=[], help="narrow the scope to this namespace")
        parser.add_argument(
            "--identity-prefix", action="append", default=[], help="narrow the scope to identities starting with this"
        )
        parser.add_argument("--owner-team", help="slug of the owning team")
        parser.add_argument("--contact", default="")
        parser.add_argument("--slo", default="")
        parser.add_argument("--contract", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        owner_slug = options["owner_team"] or (options["team"][0] if len(options["team"]) == 1 else None)
        team = None
        if owner_slug:
            team = Team.objects.filter(slug=owner_slug).first()
            if team is None:
                raise CommandError(f"No team with slug '{owner_slug}'.")
        first, *more = options["environment"]
        try:
            gateway, token = create_gateway(
                actor=SYSTEM,
                name=options["name"],
                kind=options["kind"],
                environment=first,
                environments=more,
                teams=options["team"],
                namespaces=options["namespace"],
                identity_prefixes=options["identity_prefix"],
                owner_team=team,
                contact=options["contact"],
                slo=options["slo"],
                contract=options["contract"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(f"Gateway '{gateway.name}' ({gateway.get_kind_display()}, {gateway.environment}) registered.")
        self.stdout.write(f"It speaks only for: {GatewayScope.of(gateway).describe()}.")
        self.stdout.write("Ingestion token (shown once; send it as 'Authorization: Bearer <token>'):")
        self.stdout.write(token)
