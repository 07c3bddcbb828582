"""What an egress point can see, and the one decision of whether it may speak for an identity.

A gateway is bound at creation to its environments and, optionally, teams, namespaces and
identity prefixes. Every ingestion path (OPA decision logs, flow records from Cilium/Hubble,
Istio, proxies) and the stale sweep ask ``GatewayScope.refusal``: a record about an identity
outside the scope is refused on its own, and a feed from such a gateway never makes an
identity's silence count.

An identity the portal has registered (a workload) is judged by its workload's environment,
team and namespace. One it has not registered has no environment to check: it is covered by
a matching identity prefix, or by a scope that names no teams and no namespaces (its records
then are only denied attempts, the on-ramp's data, since allowed traffic must match a grant).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exceptions.models import Workload


@dataclass(frozen=True)
class Owner:
    """What the portal knows about a registered identity."""

    environment: str
    team: str
    namespace: str


@dataclass(frozen=True)
class GatewayScope:
    environments: frozenset[str]
    teams: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    identity_prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, gateway: Any) -> GatewayScope:
        return cls(
            environments=frozenset(gateway.scope_environments or ()),
            teams=frozenset(gateway.scope_teams or ()),
            namespaces=frozenset(gateway.scope_namespaces or ()),
            identity_prefixes=tuple(gateway.scope_identity_prefixes or ()),
        )

    def describe(self) -> str:
        parts = [f"environment {', '.join(sorted(self.environments)) or '(none)'}"]
        if self.teams:
            parts.append(f"team {', '.join(sorted(self.teams))}")
        if self.namespaces:
            parts.append(f"namespace {', '.join(sorted(self.namespaces))}")
        if self.identity_prefixes:
            parts.append(f"identity prefix {', '.join(self.identity_prefixes)}")
        return "; ".join(parts)

    def refusal(self, identity: str, owner: Owner | None) -> str | None:
        """None when this scope covers ``identity`` (whose workload is ``owner``, if registered);
        otherwise why not, in words for the gateway's operator."""
        if not self.environments:
            return "the gateway has no scope; register it again with its --environment"
        if self.identity_prefixes and not identity.startswith(self.identity_prefixes):
            return f"identity {identity} is outside the gateway's scope ({self.describe()})"
        if owner is None:
            if (self.teams or self.namespaces) and not self.identity_prefixes:
                return (
                    f"identity {identity} is not a registered workload, and the gateway's scope "
                    f"({self.describe()}) covers registered workloads only"
                )
            return None
        if owner.environment not in self.environments:
            return f"identity {identity} is a {owner.environment} workload; the gateway's scope is {self.describe()}"
        if self.teams and owner.team not in self.teams:
            return f"identity {identity} belongs to team {owner.team}; the gateway's scope is {self.describe()}"
        if self.namespaces and owner.namespace not in self.namespaces:
            return (
                f"identity {identity} is in namespace {owner.namespace or '(none)'}; "
                f"the gateway's scope is {self.describe()}"
            )
        return None


def owners_of(identities: Iterable[str]) -> dict[str, Owner]:
    """The registered workloads among ``identities`` (one query per thousand)."""
    wanted = sorted(set(identities))
    owners: dict[str, Owner] = {}
    for start in range(0, len(wanted), 1000):
        rows = Workload.objects.filter(identity__in=wanted[start : start + 1000]).values_list(
            "identity", "environment", "team__slug", "namespace"
        )
        for identity, environment, team, namespace in rows:
            owners[identity] = Owner(environment, team, namespace)
    return owners


def refusals(gateway: Any, identities: Iterable[str]) -> dict[str, str]:
    """identity -> why ``gateway`` may not speak for it, for those it may not."""
    scope = GatewayScope.of(gateway)
    wanted = set(identities)
    owners = owners_of(wanted)
    result = {}
    for identity in wanted:
        reason = scope.refusal(identity, owners.get(identity))
        if reason is not None:
            result[identity] = reason
    return result
