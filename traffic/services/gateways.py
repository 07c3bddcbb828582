"""Registering egress gateways and finding one by its ingestion token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
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
    environments: Sequence[str] = (),
    teams: Sequence[str] = (),
    namespaces: Sequence[str] = (),
    identity_prefixes: Sequence[str] = (),
) -> tuple[EgressGateway, str]:
    """Register a gateway; return it and its ingestion token (shown once, only a hash is kept).

    Its scope (``traffic.scope``) is bound here, for good: ``environment`` and any further
    ``environments``, narrowed by ``teams`` (slugs), ``namespaces`` and ``identity_prefixes``.
    """
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
    scope_environments = list(dict.fromkeys([environment, *environments]))
    unknown = [e for e in scope_environments if e not in Environment.values]
    if unknown:
        errors["environment"] = [f"Unknown environment '{unknown[0]}'; choose one of {', '.join(Environment.values)}."]
    scope_teams = list(dict.fromkeys(teams))
    missing = sorted(set(scope_teams) - set(Team.objects.filter(slug__in=scope_teams).values_list("slug", flat=True)))
    if missing:
        errors["teams"] = [f"No team with slug '{missing[0]}'."]
    scope_namespaces = _scope_values(namespaces, "namespaces", "namespace", 63, errors)
    scope_prefixes = _scope_values(identity_prefixes, "identity_prefixes", "identity prefix", 300, errors)
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
            scope_environments=scope_environments,
            scope_teams=scope_teams,
            scope_namespaces=scope_namespaces,
            scope_identity_prefixes=scope_prefixes,
        )
        record_event(actor=actor, action="gateway.created", obj=gateway, after=gateway_snapshot(gateway))
    return gateway, token


def _scope_values(values: Sequence[str], field: str, label: str, limit: int, errors: dict[str, list[str]]) -> list[str]:
    kept = list(dict.fromkeys(v.strip() for v in values))
    for value in kept:
        if not value or len(value) > limit or not value.isprintable():
            errors[field] = [f"Each {label} is 1 to {limit} printable characters; {value[:40]!r} is not."]
            break
    return kept


def gateway_snapshot(gateway: EgressGateway) -> dict[str, Any]:
    return {
        "name": gateway.name,
        "kind": gateway.kind,
        "environment": gateway.environment,
        "owner_team": gateway.owner_team.slug if gateway.owner_team else None,
        "contact": gateway.contact,
        "scope": {
            "environments": gateway.scope_environments,
            "teams": gateway.scope_teams,
            "namespaces": gateway.scope_namespaces,
            "identity_prefixes": gateway.scope_identity_prefixes,
        },
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
