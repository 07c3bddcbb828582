"""Who is acting, and how they proved it: the value views pass into services.

Built from the HTTP request in one place (``actor_for``) by HTML and REST views
alike; services read it rather than request globals, and the audit layer
records it with every event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

SESSION = "session"
TOKEN = "token"  # noqa: S105 - the name of a way to authenticate, not a secret


@dataclass(frozen=True)
class Actor:
    """A signed-in person acting through a session or through one of their integration tokens."""

    user: Any
    via: str = SESSION
    token_name: str = ""
    token_scopes: tuple[str, ...] = ()
    mfa_at: datetime | None = None
    breakglass: bool = False

    @property
    def is_token(self) -> bool:
        return self.via == TOKEN

    @property
    def label(self) -> str:
        """How the audit log and the decision log name the actor."""
        name = self.user.get_username()
        return f"{name} via token {self.token_name}" if self.is_token else name

    def as_breakglass(self) -> Actor:
        return replace(self, breakglass=True)

    def mfa_fresh(self, *, within_seconds: int, now: datetime) -> bool:
        return self.mfa_at is not None and 0 <= (now - self.mfa_at).total_seconds() <= within_seconds

    def audit_context(self) -> dict[str, Any]:
        context: dict[str, Any] = {"via": self.via}
        if self.is_token:
            context.update(token=self.token_name, scopes=list(self.token_scopes))
        if self.mfa_at is not None:
            context["mfa_at"] = self.mfa_at.isoformat()
        if self.breakglass:
            context["breakglass"] = True
        return context


def user_of(actor: Any) -> Any:
    """The user behind ``actor``: services accept an Actor, or a bare user from jobs and fixtures."""
    return actor.user if isinstance(actor, Actor) else actor


def last_mfa_at(request: HttpRequest, user: Any) -> datetime | None:
    """When this session last passed an MFA code (at sign-in or a step-up), from allauth's records."""
    from allauth.account.authentication import get_authentication_records

    times = [r.get("at") for r in get_authentication_records(request, user) if r.get("method") == "mfa"]
    stamps = [t for t in times if isinstance(t, int | float)]
    return datetime.fromtimestamp(max(stamps), tz=UTC) if stamps else None


def token_label(actor: Any) -> str:
    """The acting integration token's label ('' for a person or a job): logs carry it."""
    return actor.label if isinstance(actor, Actor) and actor.is_token else ""


def integration_token(request: Any) -> Any | None:
    """The integration token a DRF request authenticated with, or None.

    The token model lives in the core (``exceptions.models.IntegrationToken``),
    above this layer; it says what it is with ``is_integration_token``.
    """
    token = getattr(request, "auth", None)
    return token if getattr(token, "is_integration_token", False) is True else None


def actor_for(request: Any) -> Actor:
    """The Actor of an HTML or DRF request (DRF puts the integration token in ``auth``, on both)."""
    token = integration_token(request)
    if token is not None:
        return Actor(user=request.user, via=TOKEN, token_name=token.name, token_scopes=tuple(token.scopes))
    http_request = getattr(request, "_request", request)
    mfa_at = last_mfa_at(http_request, request.user) if hasattr(http_request, "session") else None
    return Actor(user=request.user, via=SESSION, mfa_at=mfa_at)
