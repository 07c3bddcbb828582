"""Explain a decision: may this workload reach this name, and why (not)?

The verdict comes from the same decision function the Rego policy mirrors, over
the same records the bundle is compiled from; the rest (matched rule, nearest
candidates, a pre-filled request link) helps a person act on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from bundle.decision import POLICY_PATH, build_index, candidate_keys, decide, normalise_host
from bundle.records import to_ns
from exceptions.access import requestable_workloads, roles_for, visible_grants, visible_workloads
from exceptions.choices import GrantStatus
from exceptions.models import Grant, Workload
from exceptions.selectors import bundle_records
from exceptions.validators import validate_identity
from foundation.logging import log_explanation


@dataclass
class Explanation:
    allow: bool
    reason: str
    grant_id: int | None
    expires_at: str | None
    identity: str
    host: str
    port: object
    protocol: str
    policy_path: str = POLICY_PATH
    matched_rule: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    request_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical_identity(value: str) -> str:
    """The canonical form of an identity; a malformed one is a format error, never a plain deny."""
    from django.conf import settings

    try:
        return validate_identity(value, trust_domain=settings.EGRESS_TRUST_DOMAIN).canonical
    except ValidationError as exc:
        raise ValidationError({"identity": exc.messages}) from exc


def _describe(grant: Grant, why: str) -> dict[str, Any]:
    return {
        "why": why,
        "grant_id": grant.pk,
        "identity": grant.identity,
        "destination": f"{grant.host}:{grant.port}/{grant.protocol}",
        "status": grant.status,
        "valid_from": grant.valid_from.isoformat(),
        "expires_at": grant.expires_at.isoformat(),
        "request_id": grant.request_id,
    }


def _nearest(
    identity: str, host: str, port: object, protocol: str, now: datetime, grants: QuerySet[Grant]
) -> list[dict[str, Any]]:
    keys = candidate_keys(host)
    found: list[dict[str, Any]] = []
    same_host = grants.filter(identity=identity, host__in=keys).order_by("-expires_at")[:10]
    for grant in same_host:
        if grant.status in (GrantStatus.EXPIRED, GrantStatus.REVOKED) or grant.expires_at <= now:
            found.append(_describe(grant, f"this identity had a grant for this host; it is {grant.status}"))
        elif grant.valid_from > now:
            found.append(_describe(grant, "a grant for this host starts later"))
        elif (grant.port, grant.protocol) != (port, protocol):
            found.append(_describe(grant, "this identity may reach this host on another port or protocol"))
    others = (
        grants.filter(host__in=keys, status__in=[GrantStatus.ACTIVE, GrantStatus.SCHEDULED])
        .exclude(identity=identity)
        .order_by("identity", "id")[:5]
    )
    found += [_describe(grant, "another identity may reach this host") for grant in others]
    return found


REASON_NOT_YOURS = (
    "{identity} is not a workload of a team you belong to or approve for, so only the grants you may see "
    "are consulted: none of them allows it to reach {host}:{port}/{protocol}"
)


def may_see_identity(user: Any, identity: str) -> bool:
    """Whether ``user`` may see the grants of ``identity`` (everyone's, for the CLI without --as-user)."""
    if user is None or roles_for(user).sees_everything:
        return True
    return visible_workloads(user).filter(identity=identity).exists()


def explain(
    *, identity: str, host: str, port: object, protocol: str = "tcp", now: datetime | None = None, user: Any = None
) -> Explanation:
    """The engine's verdict with its reason, for an identity whose grants ``user`` may see
    (all of them when no user is given: the CLI). For any other identity, whether another
    team holds a grant for it (on this port, another one, or later) or none at all, the
    answer is the same deny with the same reason: the verdict or its wording would tell.
    The nearest grants listed are only those ``user`` may see."""
    now = now or timezone.now()
    identity = canonical_identity(identity)
    host_n = normalise_host(host.strip())
    protocol_n = (protocol or "tcp").lower()
    seen = may_see_identity(user, identity)
    index = build_index(bundle_records(identity=identity) if seen else [])
    decision = decide(index, identity=identity, host=host_n, port=port, protocol=protocol_n, now_ns=to_ns(now))
    result = Explanation(
        allow=decision.allow,
        reason=decision.reason,
        grant_id=decision.grant_id,
        expires_at=decision.expires_at,
        identity=identity,
        host=host_n,
        port=port,
        protocol=protocol_n,
    )
    if not seen:
        result.reason = REASON_NOT_YOURS.format(identity=identity, host=host_n, port=port, protocol=protocol_n)
    if decision.allow and decision.matched_host and decision.grant_id is not None:
        result.matched_rule = (
            f"wildcard {decision.matched_host} (exactly one extra label)"
            if decision.matched_host.startswith("*.")
            else f"exact host {decision.matched_host}"
        )
        log_explanation(result, user=user)
        return result
    visible = visible_grants(user) if user is not None else Grant.objects.all()
    result.candidates = _nearest(identity, host_n, port, protocol_n, now, visible)
    workloads = requestable_workloads(user) if user is not None else Workload.objects.all()
    workload = workloads.filter(Q(identity=identity)).values_list("id", flat=True).first()
    params: dict[str, Any] = {"host": host_n, "port": port}
    if workload is not None:
        params["workload"] = workload
    result.request_url = f"{reverse('request-create')}?{urlencode(params)}"
    log_explanation(result, user=user)
    return result
