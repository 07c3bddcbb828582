"""Registering egress gateways and finding one by its ingestion token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from audit.services import Actor, record_event
from exceptions.choices import Environment
from exceptions.models import Team
from traffic.models import EgressGateway, GatewayKind

TOKEN_PREFIX = "egw_"  # noqa: S105 - a prefix, not a secret


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_gateway(
    *,
    actor: Actor,
    name: str,
    kind: str,
    environment: str,
    owner_team: Team | None = None,
    contact: str = "",
    slo: str = "",
    contract: str = "",
) -> tuple[EgressGateway, str]:
    """Register a gateway; return it and its ingestion token (shown once, only a hash is kept)."""
    errors: dict[str, list[str]] = {}
    slug = slugify(name)
    if not slug or slug != name:
        errors["name"] = [
            f"Use a short lowercase name of letters, digits and dashes, for example '{slug or 'eu-nat'}'."
        ]
    elif EgressGateway.objects.filter(name=slug).exists():
        errors["name"] = [f"A gateway named '{slug}' exists already; pick another name."]
    if kind not in GatewayKind.values:
        errors["kind"] = [f"Unknown kind '{kind}'; choose one of {', '.join(GatewayKind.values)}."]
    if environment not in Environment.values:
        errors["environment"] = [f"Unknown environment '{environment}'; choose one of {', '.join(Environment.values)}."]
    if errors:
        raise ValidationError(errors)
    created_by: Any = actor if getattr(actor, "is_authenticated", False) else None
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        gateway = EgressGateway.objects.create(
            name=slug,
            kind=kind,
            environment=environment,
            owner_team=owner_team,
            contact=contact.strip(),
            slo=slo.strip(),
            contract=contract.strip(),
            token_prefix=prefix,
            token_hash=_hash(token),
            created_by=created_by,
        )
        record_event(actor=actor, action="gateway.created", obj=gateway, after=gateway_snapshot(gateway))
    return gateway, token


def gateway_snapshot(gateway: EgressGateway) -> dict[str, Any]:
    return {
        "name": gateway.name,
        "kind": gateway.kind,
        "environment": gateway.environment,
        "owner_team": gateway.owner_team.slug if gateway.owner_team else None,
        "contact": gateway.contact,
    }


def find_gateway(token: str) -> EgressGateway | None:
    """The gateway whose ingestion token this is, or None (constant-time comparison of the hash)."""
    if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
        return None
    prefix = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
    gateway = EgressGateway.objects.filter(token_prefix=prefix).first()
    if gateway is None or not hmac.compare_digest(gateway.token_hash, _hash(token)):
        return None
    return gateway
