"""Scoped integration tokens for the REST API: creation, revocation, authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from audit.services import record_event
from exceptions.models import IntegrationToken
from foundation.actors import user_of

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.views import APIView

SCOPES = {
    "requests:read": "list and read requests",
    "requests:write": "file and cancel requests",
    "requests:on-behalf-of": "file requests for a named team member (the 'requester' field)",
    "requests:decide": "approve and reject requests",
    "grants:read": "list and read grants",
    "grants:revoke": "revoke grants",
    "explain": "explain decisions and read bundle publications",
    "webhooks:manage": "manage webhook subscriptions and redeliver (administrators' tokens)",
}
KEY_PREFIX = "egp_"
LAST_USED_RESOLUTION = timedelta(minutes=10)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_token(
    *, actor: Any, user: Any, name: str, scopes: list[str], lifetime: timedelta | None = None
) -> tuple[IntegrationToken, str]:
    """Return the token and its key; the key is not stored and cannot be shown again."""
    unknown = sorted(set(scopes) - set(SCOPES))
    errors: dict[str, list[str]] = {}
    if unknown:
        errors["scopes"] = [f"Unknown scope(s) {', '.join(unknown)}; choose from {', '.join(sorted(SCOPES))}."]
    elif not scopes:
        errors["scopes"] = ["Give the token at least one scope; a token that may do nothing is a mistake."]
    if not name.strip():
        errors["name"] = ["Name the token after the tool that will use it, for example 'jira'."]
    if errors:
        raise ValidationError(errors)
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = IntegrationToken.objects.create(
            name=name.strip(),
            user=user,
            prefix=prefix,
            key_hash=_hash(key),
            scopes=sorted(set(scopes)),
            created_by=user_of(actor) if getattr(user_of(actor), "is_authenticated", False) else None,
            expires_at=timezone.now() + lifetime if lifetime else None,
        )
        record_event(
            actor=actor,
            action="token.created",
            obj=token,
            after={
                "name": token.name,
                "user": user.get_username(),
                "scopes": token.scopes,
                "expires_at": token.expires_at,
            },
        )
    return token, key


def revoke_token(*, actor: Any, token: IntegrationToken, reason: str = "") -> IntegrationToken:
    with transaction.atomic():
        locked = IntegrationToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is not None:
            return locked
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        record_event(actor=actor, action="token.revoked", obj=locked, after={"name": locked.name}, reason=reason)
    return locked


def find_token(key: str, *, at: datetime) -> IntegrationToken | None:
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        return None
    prefix = key[len(KEY_PREFIX) :].split("_", 1)[0]
    token = IntegrationToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.key_hash, _hash(key)):
        return None
    if not token.is_usable(at=at) or not token.user.is_active:
        return None
    return token


class IntegrationTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer egp_…``: the tool acts as the token's user, within its scopes."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[Any, IntegrationToken] | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in {"bearer", "token"} or not key.strip().startswith(KEY_PREFIX):
            return None
        now = timezone.now()
        token = find_token(key.strip(), at=now)
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown, expired or revoked integration token.")
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            # Usage metadata, not a state change of the token: no audit event.
            IntegrationToken.objects.filter(pk=token.pk).update(last_used_at=now)
        user: Any = token.user
        # What this user may do is answered for this channel: a token can never give the MFA
        # step-up a rule with ``mfa: true`` asks for (approvals.eligibility), so the API's
        # ``allowed_actions`` and ``?decidable=true`` do not offer what the decision gate refuses.
        user.egress_via_token = True
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="egress-portal"'


def token_has_scope(request: Request, scope: str) -> bool:
    """Whether the call is made through an integration token holding ``scope`` (never true for a session)."""
    token = request.auth
    return isinstance(token, IntegrationToken) and scope in token.scopes


class TokenScopePermission(permissions.BasePermission):
    """Session users pass; a token needs the scope the view names for the method."""

    message = "This integration token lacks the scope for this call."

    def has_permission(self, request: Request, view: APIView) -> bool:
        token = request.auth
        if not isinstance(token, IntegrationToken):
            return True
        required = getattr(view, "required_scopes", {}).get(request.method or "GET")
        if required is None:
            return False  # endpoints that did not name a scope are closed to tokens
        if required not in token.scopes:
            self.message = f"This integration token lacks the '{required}' scope for this call."
            return False
        return True
