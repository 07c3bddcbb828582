"""Frozen inputs of the compiler. No Django here: the compiler runs without a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=65536)
def to_ns(value: datetime) -> int:
    """Exact nanoseconds since the epoch (OPA's time.now_ns() unit)."""
    return (value - EPOCH) // timedelta(microseconds=1) * 1000


@lru_cache(maxsize=65536)
def rfc3339(value: datetime) -> str:
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if value.microsecond == 0
        else (value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    )


@dataclass(frozen=True, order=True)
class GrantRecord:
    """One grant as the enforcement engines see it."""

    id: int
    identity: str
    host: str
    port: int
    protocol: str
    valid_from: datetime
    expires_at: datetime
    tls_required: bool = True
    request_id: int = 0
    decided_by: str = ""
    workload: str = ""
    namespace: str = ""
    service_account: str = ""
    team: str = ""  # the owning team's slug: its fragments go under teams/<team>/
    # A provider service ("aws:S3/eu-west-1") instead of a name: the approval is for the
    # service, the addresses come from the provider's latest range file (``cidrs``).
    service: str = ""
    cidrs: tuple[str, ...] = ()

    @property
    def is_provider_service(self) -> bool:
        return bool(self.service)

    @property
    def is_kubernetes(self) -> bool:
        return bool(self.namespace and self.service_account)

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    @property
    def valid_from_ns(self) -> int:
        return to_ns(self.valid_from)

    @property
    def expires_at_ns(self) -> int:
        return to_ns(self.expires_at)


@dataclass(frozen=True)
class BundleOptions:
    """Where the emitted resources live in the cluster."""

    istio_namespace: str = "istio-system"
    egress_gateway_labels: tuple[tuple[str, str], ...] = (("istio", "egressgateway"),)
    dns_namespace: str = "kube-system"
    dns_labels: tuple[tuple[str, str], ...] = (("k8s-app", "kube-dns"),)
    managed_by: str = "egress-portal"
    # Every Kubernetes object stays under this many bytes (etcd refuses 1.5 MiB).
    max_object_bytes: int = 512 * 1024
    # CODEOWNERS (written only when security_owner is set): the security team owns
    # everything not owned by a team, the shared policy library included; a team's
    # handle is owners[team], else owner_template with {team}. Paths are prefixed
    # with repository_prefix (the bundle's subdirectory in the repository).
    security_owner: str = ""
    owner_template: str = ""
    owners: tuple[tuple[str, str], ...] = ()
    repository_prefix: str = ""
    # The provider range files the CIDRs came from: (provider, sync token, date), for MANIFEST.json.
    provider_ranges: tuple[tuple[str, str, str], ...] = ()
