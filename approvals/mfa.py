"""MFA rules of the portal on top of allauth: who must enrol, what a fresh step-up is,
and the audit trail of refused codes.

The step-up itself is allauth's reauthentication flow (``mfa_reauthenticate``);
allauth records each passed code in the session and rate-limits failures with
its ``login_failed`` limit, so nothing here counts attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode

from audit.services import record_event
from exceptions.access import roles_for
from foundation import encryption
from foundation.actors import SESSION, Actor

MFA_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)
# Paths an unenrolled approver may still reach: enrolment itself, signing out, assets.
_OPEN_PREFIXES = ("/accounts/", "/static/", "/healthz", "/metrics", "/api/")


def mfa_enrolled(user: Any) -> bool:
    return Authenticator.objects.filter(user=user, type__in=MFA_TYPES).exists()


def enrol_url(next_url: str = "") -> str:
    base = reverse("mfa_activate_totp")
    return f"{base}?{urlencode({'next': next_url})}" if next_url else base


def step_up_url(next_url: str) -> str:
    return f"{reverse('mfa_reauthenticate')}?{urlencode({'next': next_url})}"


def step_up_is_fresh(actor: Actor, *, now: datetime) -> bool:
    """MFA at the decision: a person in a browser session passed a code within ``EGRESS_STEP_UP_SECONDS``.

    The one rule for break-glass and for decisions under ``mfa: true``; a token, a job or a
    bare user never carries a step-up.
    """
    return actor.via == SESSION and actor.mfa_fresh(within_seconds=settings.EGRESS_STEP_UP_SECONDS, now=now)


def must_enrol(user: Any) -> bool:
    if not settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS or not user.is_authenticated:
        return False
    roles = roles_for(user)
    return (roles.is_security or roles.is_approver) and not mfa_enrolled(user)


class RequireMfaEnrolmentMiddleware:
    """Send approvers and security officers without an authenticator to enrol one first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or request.path.startswith(_OPEN_PREFIXES) or not must_enrol(user):
            return self.get_response(request)
        if request.method in {"GET", "HEAD"}:
            return HttpResponseRedirect(enrol_url(request.get_full_path()))
        return HttpResponse(
            f"Approvers and security officers must enrol an authenticator app first: {enrol_url()}",
            status=403,
            content_type="text/plain",
        )


def record_refused_code(*, actor: Any, authenticator: Authenticator, reauthentication: bool) -> None:
    """A wrong MFA code: one audit event (the refusal is the state change worth proving)."""
    with transaction.atomic():
        record_event(
            actor=actor,
            action="mfa.step_up_refused" if reauthentication else "mfa.code_refused",
            obj=authenticator,
            after={"type": authenticator.type, "reauthentication": reauthentication},
        )


def on_authentication_failed(
    sender: Any, request: HttpRequest | None, user: Any, authenticator: Authenticator, reauthentication: bool, **_: Any
) -> None:
    # At sign-in the user is not logged in yet, so the event names them without a session.
    actor = Actor(user=user) if user is not None and user.is_authenticated else None
    if actor is not None:
        record_refused_code(actor=actor, authenticator=authenticator, reauthentication=reauthentication)


def seal_authenticator_data(kind: str, data: dict[str, Any], seal: Callable[[str], str]) -> dict[str, Any]:
    """``data`` with every value allauth passes through the MFA adapter's ``encrypt`` run through ``seal``:
    a TOTP seed, a recovery-code seed and recovery codes migrated from another library."""
    data = dict(data)
    if kind == Authenticator.Type.TOTP and "secret" in data:
        data["secret"] = seal(data["secret"])
    if kind == Authenticator.Type.RECOVERY_CODES:
        if "seed" in data:
            data["seed"] = seal(data["seed"])
        if data.get("migrated_codes") is not None:
            data["migrated_codes"] = [seal(code) for code in data["migrated_codes"]]
    return data


def reencrypt_mfa_secrets() -> tuple[str, int]:
    """Seal every TOTP and recovery-code seed again under the current key (in the caller's transaction)."""
    count = 0
    sealed_types = (Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES)
    for authenticator in Authenticator.objects.select_for_update().filter(type__in=sealed_types).order_by("pk"):
        authenticator.data = seal_authenticator_data(authenticator.type, authenticator.data, encryption.reencrypt)
        authenticator.save(update_fields=["data"])
        count += 1
    return "mfa_authenticators", count
