"""Demo data, created through the services so the audit chain holds its history.

Idempotent: users and reference data are reconciled on every run, requests are
created only once. Passwords are generated on the first run, kept in
var/demo-logins.json (outside git) and printed every time.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from approvals.models import ApproverGroup
from approvals.services import approve_request, reject_request
from exceptions.access import AUDITOR_GROUP, SECURITY_GROUP
from exceptions.models import ExceptionRequest, Team, TeamMembership, Workload
from exceptions.services.batches import expire_due_grants
from exceptions.services.grants import revoke_grant
from exceptions.services.requests import cancel_request, submit_request
from exceptions.validators import validate_identity

USERS = ["requester", "approver", "security", "auditor", "admin", "platform-dev"]
TEAMS = {"payments": "Payments", "platform": "Platform"}
WORKLOADS = [
    # team, name, identity input, environment, role, sensitivity
    ("payments", "checkout-api", "payments/checkout-api", "prod", "service", "high"),
    ("payments", "checkout-api", "payments-staging/checkout-api", "staging", "service", "moderate"),
    ("payments", "checkout-api", "payments-dev/checkout-api", "dev", "service", "low"),
    ("payments", "settlement-batch", "arn:aws:iam::123456789012:role/settlement-batch", "prod", "batch", "high"),
    ("platform", "ci-runner", "ci/runner", "dev", "build", "low"),
    ("platform", "ci-runner", "ci-staging/runner", "staging", "build", "moderate"),
    (
        "platform",
        "telemetry-agent",
        "telemetry-agent@platform-prod.iam.gserviceaccount.com",
        "prod",
        "service",
        "moderate",
    ),
    (
        "platform",
        "mesh-gateway",
        "spiffe://cluster.local/ns/istio-system/sa/egress-gateway",
        "prod",
        "service",
        "moderate",
    ),
]
JUSTIFICATION = "The {name} workload calls this service for {what}; without it the {effect}."


class Command(BaseCommand):
    help = "Create demo teams, workloads, users and requests in every state (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        passwords = self._passwords()
        with transaction.atomic():
            users = self._users(passwords)
            workloads = self._reference_data(users)
        if not ExceptionRequest.objects.exists():
            self._requests(users, workloads)
            self.stdout.write(self.style.SUCCESS("Demo requests created through the services."))
        else:
            self.stdout.write("Demo requests already present; left as they are.")
        self.stdout.write("\nDemo logins (username / password):")
        for name in USERS:
            self.stdout.write(f"  {name:<14} {passwords[name]}")

    def _passwords(self) -> dict[str, str]:
        path = Path(settings.VAR_DIR) / "demo-logins.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        for name in USERS:
            stored.setdefault(name, f"{name}-{secrets.token_urlsafe(9)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return stored

    def _users(self, passwords: dict[str, str]) -> dict[str, Any]:
        user_model = get_user_model()
        users = {}
        for name in USERS:
            user, _ = user_model.objects.get_or_create(username=name, defaults={"email": f"{name}@example.org"})
            user.set_password(passwords[name])
            user.is_staff = user.is_superuser = name == "admin"
            user.save()
            users[name] = user
        Group.objects.get_or_create(name=SECURITY_GROUP)[0].user_set.add(users["security"])
        Group.objects.get_or_create(name=AUDITOR_GROUP)[0].user_set.add(users["auditor"])
        return users

    def _reference_data(self, users: dict[str, Any]) -> dict[tuple[str, str, str], Workload]:
        teams = {
            slug: Team.objects.get_or_create(slug=slug, defaults={"name": name})[0] for slug, name in TEAMS.items()
        }
        TeamMembership.objects.get_or_create(team=teams["payments"], user=users["requester"])
        TeamMembership.objects.get_or_create(team=teams["platform"], user=users["platform-dev"])
        group, _ = ApproverGroup.objects.get_or_create(name="Egress approvers")
        group.teams.add(*teams.values())
        group.members.add(users["approver"], users["security"])
        workloads = {}
        for team, name, identity, environment, role, sensitivity in WORKLOADS:
            parsed = validate_identity(identity, trust_domain=settings.EGRESS_TRUST_DOMAIN)
            workload, _ = Workload.objects.update_or_create(
                identity=parsed.canonical,
                defaults={
                    "team": teams[team],
                    "name": name,
                    "identity_kind": parsed.kind,
                    "namespace": parsed.namespace,
                    "service_account": parsed.service_account,
                    "environment": environment,
                    "role": role,
                    "sensitivity": sensitivity,
                },
            )
            workloads[(team, name, environment)] = workload
        return workloads

    def _requests(self, users: dict[str, Any], workloads: dict[tuple[str, str, str], Workload]) -> None:
        now = timezone.now()
        requester, approver, platform_dev, security = (
            users["requester"],
            users["approver"],
            users["platform-dev"],
            users["security"],
        )

        def submit(
            user: Any,
            key: tuple[str, str, str],
            hosts: list[tuple[str, int]],
            *,
            purpose: str = "partner_api",
            data_class: str = "internal",
            days: int = 7,
            at: Any = None,
            start: Any = None,
            draft: bool = False,
            what: str = "card tokenisation",
        ) -> ExceptionRequest:
            workload = workloads[key]
            return submit_request(
                actor=user,
                workload=workload,
                destinations=[{"host": h, "port": p, "protocol": "tcp"} for h, p in hosts],
                purpose=purpose,
                data_class=data_class,
                justification=JUSTIFICATION.format(name=workload.name, what=what, effect="checkout flow fails"),
                ticket_ref=f"CHG-{1000 + ExceptionRequest.objects.count()}",
                lifetime=timedelta(days=days),
                desired_start=start,
                draft=draft,
                now=at,
            )

        # Active grants to an exact host and to a wildcard.
        active = submit(requester, ("payments", "checkout-api", "staging"), [("api.stripe.com", 443)])
        approve_request(actor=approver, request=active, reason="Partner API in the approved vendor list.")
        wildcard = submit(
            platform_dev,
            ("platform", "ci-runner", "dev"),
            [("*.pythonhosted.org", 443), ("pypi.org", 443)],
            purpose="dependency_fetch",
            data_class="public",
            days=30,
            what="Python packages",
        )
        approve_request(actor=approver, request=wildcard, reason="Build dependencies; public data only.")
        expiring = submit(
            requester,
            ("payments", "settlement-batch", "prod"),
            [("sftp.bank.example", 22)],
            data_class="internal",
            days=5,
            what="nightly settlement files",
        )
        approve_request(actor=security, request=expiring, reason="Bank SFTP; renew with the new contract.")
        telemetry = submit(
            platform_dev,
            ("platform", "telemetry-agent", "prod"),
            [("ingest.telemetry.example", 443)],
            purpose="telemetry",
            data_class="internal",
            days=30,
            what="metrics export",
        )
        approve_request(actor=approver, request=telemetry, reason="Vendor telemetry with a DPA in place.")
        # Scheduled: approved now, starts tomorrow.
        scheduled = submit(
            requester,
            ("payments", "checkout-api", "dev"),
            [("sandbox.partner.example", 8443)],
            start=now + timedelta(days=1),
            what="sandbox tests",
        )
        approve_request(actor=approver, request=scheduled, reason="Sandbox only.")
        # Pending, waiting for the approver.
        submit(
            requester,
            ("payments", "checkout-api", "prod"),
            [("api.partner.example", 443), ("auth.partner.example", 443)],
            data_class="confidential",
            days=7,
            what="partner settlement API",
        )
        submit(
            platform_dev,
            ("platform", "ci-runner", "staging"),
            [("*.docker.io", 443)],
            purpose="dependency_fetch",
            data_class="public",
            days=30,
            what="container base images",
        )
        # Draft, rejected, cancelled.
        submit(
            requester,
            ("payments", "checkout-api", "dev"),
            [("debug.vendor.example", 443)],
            purpose="diagnostics",
            days=1,
            draft=True,
            what="a support session",
        )
        rejected = submit(
            requester,
            ("payments", "checkout-api", "prod"),
            [("paste.example.net", 443)],
            purpose="other",
            data_class="confidential",
            days=3,
            what="sharing logs",
        )
        reject_request(
            actor=approver, request=rejected, reason="Use the internal log share instead of a public paste site."
        )
        cancelled = submit(
            platform_dev,
            ("platform", "ci-runner", "dev"),
            [("registry.npmjs.org", 443)],
            purpose="dependency_fetch",
            data_class="public",
            days=30,
            what="npm packages",
        )
        cancel_request(actor=platform_dev, request=cancelled, reason="Moved to the internal npm mirror.")
        # Expired: filed and approved ten days ago for two days, then expired by the job.
        past = now - timedelta(days=10)
        expired = submit(
            requester,
            ("payments", "checkout-api", "staging"),
            [("status.partner.example", 443)],
            days=2,
            at=past,
            what="status checks",
        )
        approve_request(actor=approver, request=expired, reason="Short test window.", now=past)
        expire_due_grants(now=now)
        # Revoked.
        revoked = submit(
            platform_dev,
            ("platform", "ci-runner", "staging"),
            [("files.partner.example", 443)],
            data_class="internal",
            days=14,
            what="artefact uploads",
        )
        grants = approve_request(actor=approver, request=revoked, reason="Until the artefact mirror lands.")
        revoke_grant(actor=security, grant=grants[0], reason="Artefact mirror is live; direct access no longer needed.")
