"""Grant records for compiler tests: plain data, no database."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bundle.records import GrantRecord

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CHECKOUT = "spiffe://cluster.local/ns/payments/sa/checkout-api"
RUNNER = "spiffe://cluster.local/ns/ci/sa/runner"
SETTLEMENT = "arn:aws:iam::123456789012:role/settlement-batch"


# id, identity, host, port, protocol, starts (days from NOW), ends, TLS, request, decider
ROWS = [
    (1, CHECKOUT, "api.stripe.com", 443, "tcp", -1, 7, True, 10, "bob"),
    (2, CHECKOUT, "*.cdn.partner.example", 443, "tcp", -1, 3, True, 11, "bob"),
    (3, RUNNER, "pypi.org", 443, "tcp", -1, 30, True, 12, "sec"),
    (4, RUNNER, "ntp.partner.example", 123, "udp", -1, 30, False, 12, "sec"),
    (5, SETTLEMENT, "sftp.bank.example", 22, "tcp", -1, 5, False, 13, "bob"),
    # Starts tomorrow: in OPA's data (the policy checks the time), not yet in Cilium/Istio.
    (6, CHECKOUT, "sandbox.partner.example", 8443, "tcp", 1, 8, True, 14, "bob"),
    # Already expired at NOW: left out everywhere.
    (7, CHECKOUT, "old.partner.example", 443, "tcp", -9, -1, True, 9, "bob"),
]
WORKLOADS = {CHECKOUT: ("checkout-api", "payments", "checkout-api"), RUNNER: ("ci-runner", "ci", "runner"),
             SETTLEMENT: ("settlement-batch", "", "")}  # fmt: skip


def sample_records() -> list[GrantRecord]:
    records = []
    for grant_id, identity, host, port, protocol, start, end, tls, request, decider in ROWS:
        valid_from, expires_at = NOW + start * DAY, NOW + end * DAY
        workload, namespace, service_account = WORKLOADS[identity]
        record = GrantRecord(grant_id, identity, host, port, protocol, valid_from, expires_at, tls, request, decider)
        records.append(replace(record, workload=workload, namespace=namespace, service_account=service_account))
    return records


# --- many varied records (the golden digests of tests/bundle/test_golden_digests.py) ---

TEAMS = ["", "payments", "platform", "data", "search", "identity", "ml", "billing", "growth"]
ENVIRONMENTS = ["prod", "staging", "dev"]
PORTS = [(443, "tcp", True), (443, "tcp", True), (8443, "tcp", True), (22, "tcp", False), (5432, "tcp", False),
         (9092, "tcp", True), (123, "udp", False), (53, "udp", False)]  # fmt: skip
SERVICES: list[tuple[str, tuple[str, ...]]] = [
    ("aws:S3/eu-west-1", ("3.5.64.0/21", "52.218.0.0/17", "2a05:d07a:a000::/40")),
    ("aws:DYNAMODB/us-east-1", ("3.218.180.0/22", "52.94.0.0/22")),
    ("aws:S3/ap-south-1", ()),  # no range file loaded yet: Cilium skips it
]


def _pick(i: int, salt: str, n: int) -> int:
    """A stable choice in ``range(n)`` for record ``i`` (no RNG whose sequence could change)."""
    digest = hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _identity(w: int) -> tuple[str, str, str, str]:
    """Workload ``w``: identity, namespace, service account, team."""
    team = TEAMS[w % len(TEAMS)]
    namespace = f"{team or 'shared'}-{ENVIRONMENTS[w // len(TEAMS) % 3]}"
    service_account = f"svc-{w}" if w % 7 else f"worker-{w}-ranges"  # a name the ranges policy could share
    kind = w % 11
    if kind == 9:  # an IAM role: neither Cilium nor Istio can carry it
        return f"arn:aws:iam::1234567890{w % 10:02d}:role/batch-{w}", "", "", team
    if kind == 10:  # SPIFFE, not a Kubernetes workload the portal knows: Istio names its namespace
        return f"spiffe://cluster.local/ns/{namespace}/sa/{service_account}", "", "", team
    if w % 13 == 12:  # SPIFFE with no namespace in it: the "other" AuthorizationPolicy
        return f"spiffe://corp.example/vm/build-{w}", "", "", team
    return f"spiffe://cluster.local/ns/{namespace}/sa/{service_account}", namespace, service_account, team


def _host(i: int) -> str:
    shape = _pick(i, "host", 10)
    vendor = _pick(i, "vendor", 40)
    if shape == 0:
        return f"*.cdn.vendor{vendor}.example"
    if shape == 1:
        return f"*.{ENVIRONMENTS[vendor % 3]}.api.vendor{vendor}.example"
    if shape == 2:  # a long name: objects reach the size budget sooner
        return f"ingest-{i}.{'region-' * 6}eu.telemetry.vendor{vendor}.example"
    if shape in (3, 4):  # shared by many workloads
        return ["api.stripe.com", "pypi.org", "files.pythonhosted.org", "github.com", "registry.npmjs.org"][vendor % 5]
    return f"api{_pick(i, 'api', 60)}.vendor{vendor}.example"


def varied_records(count: int = 1_000, *, first_id: int = 1, workloads: int = 120) -> list[GrantRecord]:
    """``count`` deterministic grants of every shape the compiler meets.

    Exact and wildcard hosts, several ports and protocols, many workloads, teams,
    namespaces and environments, non-Kubernetes and non-SPIFFE identities,
    provider-service grants (with and without ranges), grants already expired,
    expiring within days or hours, and scheduled to start later.
    """
    records = []
    for n in range(count):
        i = first_id + n
        identity, namespace, service_account, team = _identity(_pick(i, "workload", workloads))
        port, protocol, tls = PORTS[_pick(i, "port", len(PORTS))]
        timing = _pick(i, "timing", 20)
        if timing == 0:  # expired before NOW: left out everywhere
            valid_from, expires_at = NOW - 10 * DAY, NOW - timedelta(hours=_pick(i, "ago", 48) + 1)
        elif timing in (1, 2):  # scheduled: in OPA's data, not yet in Cilium or Istio
            valid_from = NOW + timedelta(hours=_pick(i, "start", 96) + 1)
            expires_at = valid_from + timedelta(days=_pick(i, "length", 14) + 1)
        elif timing in (3, 4):  # expiring within hours (the incremental compile crosses them)
            valid_from, expires_at = NOW - DAY, NOW + timedelta(hours=_pick(i, "left", 72) + 1)
        else:
            valid_from = NOW - timedelta(hours=_pick(i, "since", 500))
            expires_at = NOW + timedelta(days=_pick(i, "days", 90) + 1, seconds=_pick(i, "seconds", 3600))
        service, host = "", _host(i)
        cidrs: tuple[str, ...] = ()
        if _pick(i, "service", 25) == 0:
            service, cidrs = SERVICES[_pick(i, "which", len(SERVICES))]
            host, port, protocol, tls = service, 443, "tcp", True
        records.append(
            GrantRecord(
                id=i,
                identity=identity,
                host=host,
                port=port,
                protocol=protocol,
                valid_from=valid_from,
                expires_at=expires_at,
                tls_required=tls,
                request_id=1_000 + i // 3,
                decided_by=["bob", "sec", "alice.approver"][_pick(i, "decider", 3)],
                workload=service_account or identity.rsplit("/", 1)[-1],
                namespace=namespace,
                service_account=service_account,
                team=team,
                service=service,
                cidrs=cidrs,
            )
        )
    return records
