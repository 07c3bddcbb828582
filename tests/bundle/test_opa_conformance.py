"""The compiled bundle, loaded into the real OPA engine, decides exactly what the portal's explain says."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bundle.compiler import compile_bundle
from bundle.decision import build_index, decide
from bundle.emitters.opa import load_data
from bundle.records import GrantRecord, to_ns

pytestmark = pytest.mark.opa

IDENTITIES = [f"spiffe://cluster.local/ns/team{i}/sa/svc{i}" for i in range(6)] + [
    "arn:aws:iam::123456789012:role/batch",
    "telemetry@proj-prod.iam.gserviceaccount.com",
]
DOMAINS = ["partner.example", "cdn.vendor.example", "api.bank.example", "registry.example.org"]
PORTS = [22, 443, 8443, 5432]


def engine_for(files: dict[str, bytes]) -> Any:
    from opa_bindings import OpaEngine

    engine = OpaEngine()
    for path, data in files.items():
        if path.endswith(".rego"):
            engine.add_policy(path, data.decode())
    engine.add_data(load_data(files))
    return engine


def random_records(rng: random.Random, now: datetime) -> list[GrantRecord]:
    records = []
    for grant_id in range(1, 401):
        domain = rng.choice(DOMAINS)
        host = rng.choice([domain, f"api.{domain}", f"*.{domain}", f"*.svc.{domain}", f"x{rng.randint(0, 9)}.{domain}"])
        window = rng.choice(["live", "live", "live", "expired", "future"])
        start = {"live": now - timedelta(days=2), "expired": now - timedelta(days=9), "future": now + timedelta(days=1)}
        end = {
            "live": now + timedelta(days=rng.randint(1, 30)),
            "expired": now - timedelta(days=1),
            "future": now + timedelta(days=5),
        }
        records.append(
            GrantRecord(
                grant_id,
                rng.choice(IDENTITIES),
                host,
                rng.choice(PORTS),
                rng.choice(["tcp", "tcp", "udp"]),
                start[window],
                end[window],
                request_id=grant_id,
            )
        )
    return records


def random_input(rng: random.Random, records: list[GrantRecord]) -> dict[str, Any]:
    base = rng.choice(records)
    domain = rng.choice(DOMAINS)
    host = (
        base.host.replace("*", rng.choice(["a", "b1", "deep.er", "*"]))
        if rng.random() < 0.7
        else rng.choice([domain, f"zz.{domain}", f"a.b.{domain}", domain.split(".", 1)[1]])
    )
    if rng.random() < 0.3:
        host = host.upper() if rng.random() < 0.5 else "".join(c.upper() if rng.random() < 0.5 else c for c in host)
    if rng.random() < 0.25:
        host += "."
    if rng.random() < 0.03:
        host += ".."
    identity = (
        base.identity if rng.random() < 0.8 else rng.choice([*IDENTITIES, "spiffe://cluster.local/ns/x/sa/unknown"])
    )
    request: dict[str, Any] = {
        "identity": identity,
        "host": host,
        "port": base.port if rng.random() < 0.75 else rng.choice(PORTS),
    }
    if rng.random() < 0.9:
        request["protocol"] = base.protocol if rng.random() < 0.8 else rng.choice(["tcp", "udp", "TCP", "UDP"])
    return request


def test_opa_agrees_with_the_portal_on_5000_random_cases() -> None:
    rng = random.Random(20261126)
    now = datetime.now(UTC)
    records = random_records(rng, now)
    bundle = compile_bundle(records, now=now)
    engine = engine_for(bundle.files)
    index = build_index(r for r in records if r.expires_at > now)
    allowed = 0
    for case in range(5000):
        request = random_input(rng, records)
        expected = decide(
            index,
            identity=request["identity"],
            host=request["host"],
            port=request["port"],
            protocol=request.get("protocol"),
            now_ns=to_ns(datetime.now(UTC)),
        )
        opa_allow = engine.eval_document("egress.allow", request)
        opa_decision = engine.eval_document("egress.decision", request)
        assert opa_allow == expected.allow, (case, request, expected)
        assert opa_decision == expected.as_contract(), (case, request)
        allowed += expected.allow
    # The generator must exercise both outcomes substantially.
    assert 500 < allowed < 4500, allowed


def test_wildcard_depth_and_bare_suffix() -> None:
    now = datetime.now(UTC)
    ident = IDENTITIES[0]
    records = [GrantRecord(1, ident, "*.partner.example", 443, "tcp", now - timedelta(days=1), now + timedelta(days=1))]
    engine = engine_for(compile_bundle(records, now=now).files)
    cases = {
        "a.partner.example": True,
        "A.Partner.Example.": True,
        "partner.example": False,
        "a.b.partner.example": False,
        ".partner.example": False,
        "*.partner.example": False,
    }
    for host, expected in cases.items():
        request = {"identity": ident, "host": host, "port": 443, "protocol": "tcp"}
        assert engine.eval_document("egress.allow", request) is expected, host


def test_generated_rego_unit_tests_pass_in_opa() -> None:
    files = compile_bundle([], now=datetime.now(UTC)).files
    engine = engine_for(files)
    source = files["opa/egress/policy_test.rego"].decode()
    tests = re.findall(r"^(test_\w+) if", source, flags=re.MULTILINE)
    assert len(tests) >= 8
    for name in tests:
        assert engine.eval_document(f"egress_test.{name}") is True, name


def test_a_broken_policy_would_fail_the_unit_tests() -> None:
    files = compile_bundle([], now=datetime.now(UTC)).files
    broken = files["opa/egress/policy.rego"].decode().replace("time.now_ns() < g.expires_at_ns", "true")
    engine = engine_for({**files, "opa/egress/policy.rego": broken.encode()})
    from opa_bindings import OpaUndefinedError

    with pytest.raises(OpaUndefinedError):
        engine.eval_document("egress_test.test_expiry_is_checked_by_the_policy")


def test_addresses_are_decided_by_provider_service_ranges_alike_in_opa_and_the_portal() -> None:
    now = datetime.now(UTC)
    ident = IDENTITIES[0]
    day = timedelta(days=1)
    s3 = ("3.5.64.0/21", "52.218.0.0/17", "2a05:d07a:a000::/40")
    records = [
        GrantRecord(1, ident, "aws:S3/eu-west-1", 443, "tcp", now - day, now + day, service="aws:S3/eu-west-1",
                    cidrs=s3),
        GrantRecord(
            2, ident, "google:Google Cloud/europe-west1", 443, "tcp", now - day, now + 3 * day,
            service="google:Google Cloud/europe-west1", cidrs=("35.187.0.0/17", "3.5.64.0/24"),
        ),
        GrantRecord(3, ident, "aws:S3/us-east-1", 443, "tcp", now + day, now + 2 * day, service="aws:S3/us-east-1",
                    cidrs=("52.216.0.0/15",)),
        GrantRecord(4, ident, "api.partner.example", 443, "tcp", now - day, now + day),
    ]  # fmt: skip
    engine = engine_for(compile_bundle(records, now=now).files)
    index = build_index(records)
    cases = [
        ("3.5.65.9", 443, True),  # S3 only
        ("3.5.64.9", 443, True),  # both: the longer-lasting Google grant is named
        ("2a05:d07a:a0ff::1", 443, True),
        ("2A05:D07A:A0FF::1", 443, True),
        ("52.218.1.1", 8443, False),  # wrong port
        ("52.216.0.1", 443, False),  # not valid yet
        ("8.8.8.8", 443, False),
        ("api.partner.example", 443, True),
        ("3.5.64", 443, False),
        ("010.0.0.1", 443, False),
    ]
    for host, port, allowed in cases:
        request = {"identity": ident, "host": host, "port": port, "protocol": "tcp"}
        expected = decide(index, identity=ident, host=host, port=port, protocol="tcp", now_ns=to_ns(datetime.now(UTC)))
        assert expected.allow is allowed, (host, expected)
        assert engine.eval_document("egress.allow", request) is allowed, host
        assert engine.eval_document("egress.decision", request) == expected.as_contract(), host
    both = decide(index, identity=ident, host="3.5.64.9", port=443, protocol="tcp", now_ns=to_ns(now))
    assert both.grant_id == 2


def test_odd_protocols_are_denied_with_a_reason_never_an_error() -> None:
    """The engine runs with strict built-in errors here: a protocol that is not a string
    (null, a number) on a name the identity has no grant for is a denial, as it was before
    the fast denials, never an evaluation error. (On a name it has grants for, the general
    path lower-cases the protocol, an error under strict built-in errors, as before.)"""
    now = datetime.now(UTC)
    ident = IDENTITIES[0]
    day = timedelta(days=1)
    records = [GrantRecord(1, ident, "api.partner.example", 443, "tcp", now - day, now + day)]
    engine = engine_for(compile_bundle(records, now=now).files)
    for protocol in (None, 6, ["tcp"]):
        request = {"identity": ident, "host": "other.partner.example", "port": 443, "protocol": protocol}
        decision = engine.eval_document("egress.decision", request)
        assert decision == {
            "allow": False,
            "reason": f"no grant for {ident} to reach other.partner.example",
            "grant_id": None,
            "expires_at": None,
        }
        assert engine.eval_document("egress.allow", request) is False
