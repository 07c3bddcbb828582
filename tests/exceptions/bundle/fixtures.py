"""Grant records for compiler tests: plain data, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exceptions.bundle.records import GrantRecord

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CHECKOUT = "spiffe://cluster.local/ns/payments/sa/checkout-api"
RUNNER = "spiffe://cluster.local/ns/ci/sa/runner"
SETTLEMENT = "arn:aws:iam::123456789012:role/settlement-batch"


def sample_records() -> list[GrantRecord]:
    return [
        GrantRecord(
            1,
            CHECKOUT,
            "api.stripe.com",
            443,
            "tcp",
            NOW - DAY,
            NOW + 7 * DAY,
            True,
            10,
            "bob",
            "checkout-api",
            "payments",
            "checkout-api",
        ),
        GrantRecord(
            2,
            CHECKOUT,
            "*.cdn.partner.example",
            443,
            "tcp",
            NOW - DAY,
            NOW + 3 * DAY,
            True,
            11,
            "bob",
            "checkout-api",
            "payments",
            "checkout-api",
        ),
        GrantRecord(
            3, RUNNER, "pypi.org", 443, "tcp", NOW - DAY, NOW + 30 * DAY, True, 12, "sec", "ci-runner", "ci", "runner"
        ),
        GrantRecord(
            4,
            RUNNER,
            "ntp.partner.example",
            123,
            "udp",
            NOW - DAY,
            NOW + 30 * DAY,
            False,
            12,
            "sec",
            "ci-runner",
            "ci",
            "runner",
        ),
        GrantRecord(
            5,
            SETTLEMENT,
            "sftp.bank.example",
            22,
            "tcp",
            NOW - DAY,
            NOW + 5 * DAY,
            False,
            13,
            "bob",
            "settlement-batch",
        ),
        # Starts tomorrow: in OPA's data (the policy checks the time), not yet in Cilium/Istio.
        GrantRecord(
            6,
            CHECKOUT,
            "sandbox.partner.example",
            8443,
            "tcp",
            NOW + DAY,
            NOW + 8 * DAY,
            True,
            14,
            "bob",
            "checkout-api",
            "payments",
            "checkout-api",
        ),
        # Already expired at NOW: left out everywhere.
        GrantRecord(
            7,
            CHECKOUT,
            "old.partner.example",
            443,
            "tcp",
            NOW - 9 * DAY,
            NOW - DAY,
            True,
            9,
            "bob",
            "checkout-api",
            "payments",
            "checkout-api",
        ),
    ]
