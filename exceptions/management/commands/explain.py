from __future__ import annotations

import argparse
import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exceptions.explain import explain
from exceptions.validators import PORT, parse_bounded_int


def _port(value: str) -> int:
    # The same bounded parser as the pages and the API: ASCII digits from 1 to 65535.
    try:
        return parse_bounded_int(value, PORT)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(" ".join(exc.messages)) from exc


class Command(BaseCommand):
    help = "May this workload reach this name, and why (not)? Same answer as data.egress.decision in OPA."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--identity", required=True, help="SPIFFE ID, namespace/serviceaccount, ARN or e-mail")
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", required=True, type=_port)
        parser.add_argument("--protocol", default="tcp", choices=["tcp", "udp"])
        parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
        parser.add_argument(
            "--as-user",
            metavar="USERNAME",
            help="answer as this user would see it (grant ids and expiries only for grants they may see); "
            "without it, the operator's full view",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["as_user"]:
            user = get_user_model().objects.filter(username=options["as_user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['as_user']!r}.")
        try:
            result = explain(
                identity=options["identity"],
                host=options["host"],
                port=options["port"],
                protocol=options["protocol"],
                user=user,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2, sort_keys=True))
            return
        verdict = self.style.SUCCESS("ALLOW") if result.allow else self.style.ERROR("DENY")
        self.stdout.write(f"{verdict}  {result.reason}")
        self.stdout.write(f"  policy path:  {result.policy_path}")
        self.stdout.write(f"  identity:     {result.identity}")
        self.stdout.write(f"  destination:  {result.host}:{result.port}/{result.protocol}")
        if result.allow:
            self.stdout.write(f"  matched rule: {result.matched_rule}")
            self.stdout.write(f"  grant:        #{result.grant_id} until {result.expires_at}")
            return
        for candidate in result.candidates:
            self.stdout.write(
                f"  nearest:      {candidate['why']}: grant #{candidate['grant_id']} {candidate['identity']} -> "
                f"{candidate['destination']} ({candidate['status']}, until {candidate['expires_at']})"
            )
        self.stdout.write(f"  request it:   {result.request_url}")
