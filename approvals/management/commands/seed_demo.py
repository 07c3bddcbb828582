"""Demo data, created through the services so the audit chain holds its history.

Idempotent: users and reference data are reconciled on every run, requests are
created only once. Passwords are generated on the first run, kept in
var/demo-logins.json (outside git) and printed every time. The approver and the
security officer have TOTP enrolled (the default approval policy asks for MFA
on high-risk requests); their secrets sit beside the passwords, under
``totp``. A weekly production change window (Tuesdays 02:00 Europe/Berlin)
lets production requests go live under the default policy.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from approvals import reference
from approvals.services import approve_request, reject_request
from audit.services import SYSTEM
from exceptions.access import AUDITOR_GROUP, SECURITY_GROUP
from exceptions.models import ExceptionRequest, Workload
from exceptions.services.batches import expire_due_grants
from exceptions.services.grants import revoke_grant
from exceptions.services.requests import cancel_request, submit_request
from exceptions.validators import validate_identity

USERS = ["requester", "approver", "security", "auditor", "admin", "platform-dev"]
TOTP_USERS = ["approver", "security"]
PROD_WINDOW_NAME = "Weekly production window"
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
            secrets_by_user = self._totp(users)
        if not ExceptionRequest.objects.exists():
            self._requests(users, workloads)
            self.stdout.write(self.style.SUCCESS("Demo requests created through the services."))
        else:
            self.stdout.write("Demo requests already present; left as they are.")
        self.stdout.write("\nDemo logins (username / password):")
        for name in USERS:
            self.stdout.write(f"  {name:<14} {passwords[name]}")
        self.stdout.write("TOTP secrets (add to an authenticator app; also in var/demo-logins.json):")
        for name, secret in secrets_by_user.items():
            self.stdout.write(f"  {name:<14} {secret}")

    def _totp(self, users: dict[str, Any]) -> dict[str, str]:
        """Enrol TOTP for the demo approvers, keeping each secret beside the passwords."""
        path = Path(settings.VAR_DIR) / "demo-logins.json"
        stored: dict[str, Any] = json.loads(path.read_text())
        secrets_by_user: dict[str, str] = stored.setdefault("totp", {})
        for name in TOTP_USERS:
            user = users[name]
            enrolled = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
            if enrolled and name in secrets_by_user:
                continue
            Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).delete()
            secrets_by_user[name] = generate_totp_secret()
            TOTP.activate(user, secrets_by_user[name])
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return {name: secrets_by_user[name] for name in TOTP_USERS}

    def _passwords(self) -> dict[str, str]:
        path = Path(settings.VAR_DIR) / "demo-logins.json"
        stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for name in USERS:
            stored.setdefault(name, f"{name}-{secrets.token_urlsafe(9)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        return {name: str(stored[name]) for name in USERS}

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
        teams = {slug: reference.ensure_team(actor=SYSTEM, slug=slug, name=name) for slug, name in TEAMS.items()}
        reference.add_team_member(actor=SYSTEM, team=teams["payments"], user=users["requester"])
        reference.add_team_member(actor=SYSTEM, team=teams["platform"], user=users["platform-dev"])
        group = reference.ensure_approver_group(actor=SYSTEM, name="Egress approvers", teams=list(teams.values()))
        reference.add_approver(actor=SYSTEM, group=group, user=users["approver"])
        reference.add_approver(actor=SYSTEM, group=group, user=users["security"])
        reference.save_change_window(
            actor=SYSTEM,
            name=PROD_WINDOW_NAME,
            environments=["prod"],
            rrule="FREQ=WEEKLY;BYDAY=TU",
            first_start_local=datetime(2026, 1, 6, 2, 0),
            duration=timedelta(hours=4),
            time_zone="Europe/Berlin",
        )
        workloads = {}
        for team, name, identity, environment, role, sensitivity in WORKLOADS:
            parsed = validate_identity(identity, trust_domain=settings.EGRESS_TRUST_DOMAIN)
            workload = reference.save_workload(
                actor=SYSTEM,
                identity=parsed.canonical,
                values={
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
        # Staging, so it is live at once (production waits for the Tuesday window).
        expiring = submit(
            requester,
            ("payments", "checkout-api", "staging"),
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
            # Internal data: medium risk, rule "production". The demo's decisions go through the
            # decision gate like any other; a rule with MFA at the decision needs a person in a browser.
            data_class="internal",
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
