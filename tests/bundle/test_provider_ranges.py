"""Provider range files (AWS ip-ranges.json, Google cloud.json): read, checked, compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle.provider_ranges import RangeFileError, changed_services, parse

FILES = Path(__file__).parent / "provider_files"


def test_aws_ranges_are_grouped_by_service_and_region_with_the_sync_token() -> None:
    ranges = parse("aws", (FILES / "ip-ranges.json").read_bytes())
    assert (ranges.provider, ranges.sync_token, ranges.published) == ("aws", "1732800000", "2026-11-28-10-00-00")
    assert ranges.services["S3/eu-west-1"] == ("3.5.64.0/21", "52.218.0.0/17", "2a05:d07a:a000::/40")
    assert ranges.services["S3/us-east-1"] == ("52.216.0.0/15",)
    assert "AMAZON/eu-west-1" in ranges.services


def test_google_ranges_are_grouped_by_service_and_scope() -> None:
    ranges = parse("google", (FILES / "cloud.json").read_bytes())
    assert ranges.sync_token == "1732790000000"
    assert ranges.services["Google Cloud/europe-west1"] == ("35.187.0.0/17", "2600:1900:4010::/44")


@pytest.mark.parametrize(
    ("provider", "document", "message"),
    [
        ("aws", {"createDate": "x", "prefixes": []}, "'syncToken' is missing"),
        ("aws", {"syncToken": "1", "createDate": "x", "prefixes": []}, "no prefixes at all"),
        (
            "aws",
            {
                "syncToken": "1",
                "createDate": "x",
                "prefixes": [{"ip_prefix": "52.218.0.1/17", "region": "r", "service": "S3"}],
            },
            r"prefixes\[0\].ip_prefix: '52.218.0.1/17' is not a network address",
        ),
        (
            "aws",
            {"syncToken": "1", "createDate": "x", "prefixes": [{"ip_prefix": "10.0.0.0/8", "service": "S3"}]},
            r"prefixes\[0\]: 'region' is missing",
        ),
        (
            "google",
            {"syncToken": "1", "creationTime": "t", "prefixes": [{"ipv4Prefix": "nope", "service": "s", "scope": "x"}]},
            "not a network address",
        ),
        ("azure", {}, "unknown provider"),
    ],
)
def test_a_bad_file_is_refused_with_the_place_and_the_reason(provider: str, document: dict, message: str) -> None:
    with pytest.raises(RangeFileError, match=message):
        parse(provider, json.dumps(document).encode())


def test_not_json_is_refused() -> None:
    with pytest.raises(RangeFileError, match="not JSON"):
        parse("aws", b"<html>rate limited</html>")


def test_changed_services_are_those_whose_numbers_moved() -> None:
    before = {"S3/eu-west-1": ("3.5.64.0/21",), "S3/us-east-1": ("52.216.0.0/15",), "EC2/x": ("1.0.0.0/8",)}
    after = {
        "S3/eu-west-1": ("3.5.64.0/21", "3.5.72.0/23"),
        "S3/us-east-1": ("52.216.0.0/15",),
        "EC2/y": ("2.0.0.0/8",),
    }
    assert changed_services(before, after) == ["EC2/x", "EC2/y", "S3/eu-west-1"]


def test_a_provider_service_grant_becomes_cidrs_from_the_current_range_file() -> None:
    from dataclasses import replace

    import yaml

    from bundle.compiler import MANIFEST, compile_bundle
    from bundle.emitters.opa import shard_of, shard_path
    from bundle.records import BundleOptions
    from tests.bundle.fixtures import NOW, sample_records
    from tests.bundle.test_compiler import _schema_errors

    ranges = parse("aws", (FILES / "ip-ranges.json").read_bytes())
    checkout = sample_records()[0]
    grant = replace(
        checkout,
        id=40,
        host="aws:S3/eu-west-1",
        service="aws:S3/eu-west-1",
        cidrs=ranges.services["S3/eu-west-1"],
    )
    options = BundleOptions(provider_ranges=(("aws", ranges.sync_token, ranges.published),))
    bundle = compile_bundle([*sample_records(), grant], now=NOW, options=options)
    policy = yaml.safe_load(bundle.files["cilium/payments/egress-checkout-api-ranges.yaml"])
    assert _schema_errors("ciliumnetworkpolicy_v2.json", policy) == []
    [rule] = policy["spec"]["egress"]
    assert rule["toCIDRSet"] == [{"cidr": "3.5.64.0/21"}, {"cidr": "52.218.0.0/17"}, {"cidr": "2a05:d07a:a000::/40"}]
    assert rule["toPorts"] == [{"ports": [{"port": "443", "protocol": "TCP"}]}]
    manifest = json.loads(bundle.files[MANIFEST])
    assert manifest["provider_ranges"] == {"aws": {"sync_token": "1732800000", "published": "2026-11-28-10-00-00"}}
    assert any("provider service" in entry for entry in manifest["skipped"]["istio"])
    # New numbers from the provider, same approval: only the ranges policy, the identity's
    # OPA shard (its grants carry the CIDRs) and the manifests change.
    moved = replace(grant, cidrs=(*grant.cidrs, "3.5.72.0/23"))
    newer = compile_bundle([*sample_records(), moved], now=NOW, options=options)
    changed = {path for path in bundle.files if bundle.files[path] != newer.files.get(path)}
    shard = shard_path(shard_of(grant.identity))
    assert changed == {"cilium/payments/egress-checkout-api-ranges.yaml", shard, MANIFEST, "opa/.manifest"}
    assert "3.5.72.0/23" in newer.files[shard].decode()
