"""Grant records for compiler tests: plain data, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from exceptions.bundle.records import GrantRecord

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
