"""The pure compiler: golden files, determinism, and the engines' own schemas. No database."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import jsonschema
import pytest
import yaml

from bundle.compiler import MANIFEST, compile_bundle, digest
from tests.bundle.fixtures import CHECKOUT, NOW, SETTLEMENT, sample_records

GOLDEN = Path(__file__).parent / "golden"
SCHEMAS = Path(__file__).parent / "schemas"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def test_bundle_matches_the_golden_files() -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    if UPDATE:
        for path, data in bundle.files.items():
            (GOLDEN / path).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / path).write_bytes(data)
    golden = {str(p.relative_to(GOLDEN)): p.read_bytes() for p in GOLDEN.rglob("*") if p.is_file()}
    assert sorted(golden) == sorted(bundle.files), "set UPDATE_GOLDEN=1 after an intended change"
    for path, data in bundle.files.items():
        assert data == golden[path], f"{path} differs from its golden file"


def test_identical_input_gives_identical_bytes_whatever_the_order() -> None:
    records = sample_records()
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    assert compile_bundle(records, now=NOW).files == compile_bundle(shuffled, now=NOW).files


def test_revision_is_a_content_digest() -> None:
    records = sample_records()
    first = compile_bundle(records, now=NOW)
    changed = compile_bundle(records[:-2], now=NOW)  # drop the scheduled and the expired grant
    assert first.revision != changed.revision
    manifest = json.loads(first.files["opa/.manifest"])
    assert manifest == {"revision": first.revision, "roots": ["egress"], "rego_version": 1}


def test_manifest_lists_counts_skips_and_digests() -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    manifest = json.loads(bundle.files[MANIFEST])
    assert manifest["counts"]["grants"] == 6  # the expired one is left out
    assert manifest["counts"]["grants_valid_now"] == 5
    assert SETTLEMENT in manifest["skipped"]["cilium"]
    assert any("udp" in entry for entry in manifest["skipped"]["istio"])
    for path, sha in manifest["files"].items():
        assert digest(bundle.files[path]) == sha


def test_data_is_indexed_by_identity_then_host_in_a_file_per_shard() -> None:
    from bundle.emitters.opa import load_data, shard_of, shard_path

    files = compile_bundle(sample_records(), now=NOW).files
    data = load_data(files)
    shard = shard_of(CHECKOUT)
    assert data["egress"]["shard"][CHECKOUT] == shard
    assert json.loads(files[shard_path(shard)])[CHECKOUT] == data["egress"]["grants"][shard][CHECKOUT]
    grants = data["egress"]["grants"][shard]
    assert sorted(grants[CHECKOUT]) == ["*.cdn.partner.example", "api.stripe.com", "sandbox.partner.example"]
    assert grants[CHECKOUT]["api.stripe.com"][0]["id"] == 1
    assert "old.partner.example" not in grants[CHECKOUT]


def test_cilium_policy_selects_the_service_account_and_allows_dns() -> None:
    files = compile_bundle(sample_records(), now=NOW).files
    policy = yaml.safe_load(files["cilium/payments/egress-checkout-api.yaml"])
    assert policy["spec"]["endpointSelector"]["matchLabels"] == {
        "io.kubernetes.pod.namespace": "payments",
        "io.cilium.k8s.policy.serviceaccount": "checkout-api",
    }
    dns, fqdns = policy["spec"]["egress"]
    assert dns["toPorts"][0]["rules"]["dns"] == [{"matchPattern": "*"}]
    assert fqdns["toFQDNs"] == [{"matchPattern": "*.cdn.partner.example"}, {"matchName": "api.stripe.com"}]
    assert "sandbox.partner.example" not in files["cilium/payments/egress-checkout-api.yaml"].decode()


def _schema_errors(schema_file: str, document: dict) -> list[str]:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


SCHEMA_FOR_KIND = {
    "CiliumNetworkPolicy": "ciliumnetworkpolicy_v2.json",
    "ServiceEntry": "serviceentry_v1.json",
    "AuthorizationPolicy": "authorizationpolicy_v1.json",
}


def test_every_emitted_manifest_validates_against_the_engines_schema() -> None:
    bundle = compile_bundle(sample_records(), now=NOW)
    kinds = set()
    for path, data in bundle.files.items():
        if not path.endswith(".yaml"):
            continue
        document = yaml.safe_load(data)
        kinds.add(document["kind"])
        assert _schema_errors(SCHEMA_FOR_KIND[document["kind"]], document) == [], path
    assert kinds == set(SCHEMA_FOR_KIND)


def test_schema_check_would_catch_a_broken_manifest() -> None:
    document = yaml.safe_load(
        compile_bundle(sample_records(), now=NOW).files["cilium/payments/egress-checkout-api.yaml"]
    )
    document["spec"]["egress"][1]["toPorts"][0]["ports"][0]["protocol"] = "QUIC"
    assert _schema_errors("ciliumnetworkpolicy_v2.json", document)


def test_empty_state_denies_everything_at_the_gateway() -> None:
    bundle = compile_bundle([], now=NOW)
    policy = yaml.safe_load(bundle.files["istio/authorizationpolicy.yaml"])
    assert policy["spec"]["action"] == "ALLOW" and policy["spec"]["rules"] == []
    assert not [path for path in bundle.files if path.startswith("istio/authorizationpolicies/")]
    assert json.loads(bundle.files["opa/data.json"]) == {"egress": {"shard": {}}}
    assert not [path for path in bundle.files if path.startswith("opa/egress/grants/")]


@pytest.mark.parametrize("host", ["*.cdn.partner.example", "api.stripe.com"])
def test_resource_names_are_dns_labels(host: str) -> None:
    from bundle.kubernetes import resource_name

    name = resource_name("egress", host)
    assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower()


def test_yaml_emitter_round_trips_through_pyyaml() -> None:
    from bundle.kubernetes import to_yaml

    document = {
        "plain": "value",
        "tricky": ["yes", "no", "null", "1.0", "0x1f", "- dash", "a: b", "# hash", "*.star", "ünï", "", "'q'", '"dq"'],
        "yes": {"nested": [{"a": 1, "b": True}, [1, 2], [], {}], "empty": {}},
        "weird key: x": None,
        "numbers": [0, 65535, -1],
    }
    assert yaml.safe_load(to_yaml(document)) == document


def test_every_yaml_file_loads_back_to_valid_kubernetes_objects() -> None:
    for path, data in compile_bundle(sample_records(), now=NOW).files.items():
        if path.endswith(".yaml"):
            document = yaml.safe_load(data)
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(document), path


@pytest.mark.parametrize("hosts", [["api.stripe.com", "b.example", "a.example"], ["*.cdn.partner.example"]])
def test_fast_service_entry_rendering_equals_the_generic_emitter(hosts: list[str]) -> None:
    from bundle.emitters import istio
    from bundle.kubernetes import to_yaml
    from bundle.records import BundleOptions

    ports = ((443, True), (8080, False))
    options = BundleOptions(istio_namespace="mesh-egress")
    fast = istio.service_entry_yaml(hosts, ports, options, name="egress-x")
    assert fast == to_yaml(istio.service_entry(hosts, ports, options, name="egress-x"))


@pytest.mark.parametrize(
    "options",
    [
        None,
        {"dns_namespace": "dns", "dns_labels": (("app", "coredns"), ("tier", "infra")), "managed_by": "portal-prod"},
    ],
)
def test_fast_cilium_rendering_equals_the_generic_emitter(options: dict | None) -> None:
    from bundle.emitters import cilium
    from bundle.kubernetes import to_yaml
    from bundle.records import BundleOptions

    bundle_options = BundleOptions(**(options or {}))
    grants = [r for r in sample_records() if r.namespace == "payments"] + [
        r for r in sample_records() if r.protocol == "udp"
    ]
    destinations = cilium.destinations(grants)
    fast = cilium.policy_yaml("payments", "checkout-api", destinations, bundle_options)
    assert fast == to_yaml(cilium.policy("payments", "checkout-api", destinations, bundle_options))


def test_teams_own_their_fragments_and_codeowners_says_so() -> None:
    from dataclasses import replace

    from bundle.records import BundleOptions

    records = [replace(r, team="payments" if "payments" in r.identity else "ci") for r in sample_records()]
    options = BundleOptions(
        security_owner="@acme/security",
        owner_template="@acme/{team}",
        owners=(("ci", "@acme/build-infra"),),
        repository_prefix="egress/prod",
    )
    bundle = compile_bundle(records, now=NOW, options=options)
    assert "teams/payments/cilium/payments/egress-checkout-api.yaml" in bundle.files
    assert "teams/ci/cilium/ci/egress-runner.yaml" in bundle.files
    policy = yaml.safe_load(
        bundle.files["teams/payments/istio/authorizationpolicies/egress-portal-allow-payments-ns-payments.yaml"]
    )
    assert policy["metadata"]["name"] == "egress-portal-allow-payments-ns-payments"
    assert _schema_errors("authorizationpolicy_v1.json", policy) == []
    lines = bundle.files["CODEOWNERS"].decode().splitlines()
    assert "/egress/prod/* @acme/security" in lines and "/egress/prod/opa/ @acme/security" in lines
    assert lines[-2:] == ["/egress/prod/teams/ci/ @acme/build-infra", "/egress/prod/teams/payments/ @acme/payments"]
    teams = json.loads(bundle.files[MANIFEST])["teams"]
    assert teams["payments"] == {"grants": 3, "workloads": 1, "objects": 2}
    assert teams["ci"] == {"grants": 3, "workloads": 2, "objects": 2}  # the settlement batch is no Kubernetes workload
    # Without owners configured the compiler writes no CODEOWNERS.
    assert "CODEOWNERS" not in compile_bundle(records, now=NOW).files
