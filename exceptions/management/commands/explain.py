from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from exceptions.explain import explain


class Command(BaseCommand):
    help = "May this workload reach this name, and why (not)? Same answer as data.egress.decision in OPA."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--identity", required=True, help="SPIFFE ID, namespace/serviceaccount, ARN or e-mail")
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", required=True, type=int)
        parser.add_argument("--protocol", default="tcp", choices=["tcp", "udp"])
        parser.add_argument("--json", action="store_true", help="print the explanation as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        result = explain(
            identity=options["identity"], host=options["host"], port=options["port"], protocol=options["protocol"]
        )
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
