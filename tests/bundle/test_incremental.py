"""The incremental compiler gives the full compiler's bytes after any sequence of changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundle.compiler import Bundle, compile_bundle
from bundle.incremental import IncrementalCompiler
from bundle.records import BundleOptions, GrantRecord
from tests.bundle.fixtures import NOW, sample_records

HOUR = timedelta(hours=1)
# Small budgets split objects (and so exercise the split parts); owners add CODEOWNERS.
OPTIONS = [
    BundleOptions(),
    BundleOptions(max_object_bytes=1500, security_owner="@org/security", owner_template="@org/{team}"),
    BundleOptions(max_object_bytes=2500, provider_ranges=(("aws", "1700000000", "2026-05-30-10-00-00"),)),
]
WORKLOADS = [
    # identity, namespace, service account (no namespace: not a Kubernetes workload)
    ("spiffe://cluster.local/ns/shop/sa/api", "shop", "api"),
    ("spiffe://cluster.local/ns/shop/sa/api-ranges", "shop", "api-ranges"),  # a name the ranges policy shares
    ("spiffe://cluster.local/ns/ci/sa/runner", "ci", "runner"),
    ("spiffe://cluster.local/ns/ci/sa/runner-0", "ci", "runner-0"),  # a name a split part shares
    ("arn:aws:iam::123456789012:role/batch", "", ""),
    ("spiffe://cluster.local/ns/other/sa/x", "", ""),
]
HOSTS = ["api.stripe.com", "pypi.org", "*.cdn.partner.example", "a.partner.example", "b.partner.example"]
HOSTS += [f"h{i}.vendor{i % 3}.example" for i in range(12)]
SERVICES = [("", ()), ("aws:S3/eu-west-1", ("3.5.64.0/21", "2a05:d07a:a000::/40")), ("aws:S3/us-east-1", ())]


@st.composite
def grant_fields(draw: st.DrawFn) -> dict:
    identity, namespace, service_account = draw(st.sampled_from(WORKLOADS))
    service, cidrs = draw(st.sampled_from(SERVICES))
    start = draw(st.integers(-48, 48))
    return {
        "identity": identity,
        "host": service or draw(st.sampled_from(HOSTS)),
        "port": draw(st.sampled_from([443, 8443, 123])),
        "protocol": draw(st.sampled_from(["tcp", "tcp", "udp"])),
        "valid_from": NOW + start * HOUR,
        "expires_at": NOW + (start + draw(st.integers(1, 96))) * HOUR,
        "tls_required": draw(st.booleans()),
        "request_id": draw(st.integers(1, 5)),
        "decided_by": draw(st.sampled_from(["bob", "sec"])),
        "namespace": namespace,
        "service_account": service_account,
        "team": draw(st.sampled_from(["", "payments", "platform"])),
        "service": service,
        "cidrs": cidrs,
    }


STEPS = st.one_of(
    st.tuples(st.just("add"), grant_fields()),
    st.tuples(st.just("add many"), st.lists(grant_fields(), min_size=5, max_size=30)),
    st.tuples(st.just("remove"), st.integers(0, 10_000)),
    st.tuples(st.just("change"), st.integers(0, 10_000), grant_fields()),
    st.tuples(st.just("advance"), st.integers(0, 30)),
    st.tuples(st.just("back"), st.integers(1, 10)),
    st.tuples(st.just("options"), st.integers(0, len(OPTIONS) - 1)),
)


def assert_same(incremental: Bundle, full: Bundle) -> None:
    assert incremental.files == full.files
    assert list(incremental.files) == list(full.files)
    assert incremental.revision == full.revision
    assert incremental.grant_count == full.grant_count
    assert incremental.digests == full.digests
    assert dict(incremental.records) == dict(full.records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEPS, min_size=1, max_size=25), as_mapping=st.booleans())
def test_incremental_compile_equals_the_full_compile_after_every_step(steps: list, as_mapping: bool) -> None:
    compiler = IncrementalCompiler()
    records: dict[int, GrantRecord] = {r.id: r for r in sample_records()}
    next_id, now, options = 100, NOW, OPTIONS[0]
    for step in steps:
        kind = step[0]
        if kind == "add":
            records[next_id] = GrantRecord(id=next_id, **step[1])
            next_id += 1
        elif kind == "add many":
            for fields in step[1]:
                records[next_id] = GrantRecord(id=next_id, **fields)
                next_id += 1
        elif kind == "remove" and records:
            del records[sorted(records)[step[1] % len(records)]]
        elif kind == "change" and records:
            # Same id, other fields (the refresh reads a renamed workload): an equal copy must change nothing.
            grant_id = sorted(records)[step[1] % len(records)]
            records[grant_id] = GrantRecord(id=grant_id, **step[2])
        elif kind == "advance":
            now += step[1] * HOUR
        elif kind == "back":
            now -= step[1] * HOUR
        elif kind == "options":
            options = OPTIONS[step[1]]
        given_records = dict(records) if as_mapping else [replace(r) for r in records.values()]
        incremental = compiler.compile(given_records, now=now, options=options)
        assert_same(incremental, compile_bundle(list(records.values()), now=now, options=options))


def test_one_new_grant_renders_only_its_own_groups() -> None:
    workloads = [(f"spiffe://cluster.local/ns/team{i % 5}/sa/svc{i}", f"team{i % 5}", f"svc{i}") for i in range(40)]
    records = [
        GrantRecord(
            id=i + 1,
            identity=workloads[i % 40][0],
            host=f"api.partner{i}.example",
            port=443,
            protocol="tcp",
            valid_from=NOW - HOUR,
            expires_at=NOW + 100 * HOUR,
            namespace=workloads[i % 40][1],
            service_account=workloads[i % 40][2],
        )
        for i in range(200)
    ]
    compiler = IncrementalCompiler()
    before = compiler.compile(records, now=NOW)
    added = replace(records[0], id=1000, host="new.vendor.example")
    after = compiler.compile([*records, added], now=NOW + timedelta(minutes=1))
    assert_same(after, compile_bundle([*records, added], now=NOW + timedelta(minutes=1)))
    rendered = {path for path, data in after.files.items() if before.files.get(path) is not data}
    # Its OPA shard (the identity map stays: a known identity), its Cilium policy, its
    # ServiceEntry group, its namespace's AuthorizationPolicy, and the two manifests.
    assert rendered == {
        "MANIFEST.json",
        "opa/.manifest",
        f"opa/egress/grants/{_shard(added.identity)}/data.json",
        "cilium/team0/egress-svc0.yaml",
        "istio/serviceentries/egress-dns-tls443.yaml",
        "istio/authorizationpolicies/egress-portal-allow-ns-team0.yaml",
    }
    assert compiler.full_compiles == 1 and compiler.compiles == 2


def _shard(identity: str) -> str:
    from bundle.emitters.opa import shard_of

    return shard_of(identity)


def test_grants_go_live_and_expire_as_time_passes_without_any_record_changing() -> None:
    records = sample_records()
    compiler = IncrementalCompiler()
    for hours in (0, 1, 23, 24, 25, 72, 24 * 8, 24 * 31):
        now = NOW + hours * HOUR
        assert_same(compiler.compile(records, now=now), compile_bundle(records, now=now))
    assert compiler.full_compiles == 1
    assert compiler.compile(records, now=NOW + 24 * 31 * HOUR).grant_count == 0


def test_an_earlier_now_or_other_options_compile_from_scratch() -> None:
    records = sample_records()
    compiler = IncrementalCompiler()
    compiler.compile(records, now=NOW)
    assert_same(compiler.compile(records, now=NOW - HOUR), compile_bundle(records, now=NOW - HOUR))
    assert_same(
        compiler.compile(records, now=NOW, options=OPTIONS[1]), compile_bundle(records, now=NOW, options=OPTIONS[1])
    )
    assert_same(compiler.compile(records, now=NOW, full=True), compile_bundle(records, now=NOW))
    assert compiler.full_compiles == 4


def test_records_sharing_an_id_are_refused() -> None:
    record = sample_records()[0]
    with pytest.raises(ValueError, match="records: two records share an id"):
        IncrementalCompiler().compile([record, replace(record, host="other.example")], now=NOW)
