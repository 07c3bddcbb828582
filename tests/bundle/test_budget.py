"""Every Kubernetes object under the size budget, grouped so one grant changes O(1) files."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bundles import grant_records
from bundle.budget import ObjectTooLarge, SortedItems, fit, item_key, refit
from bundle.compiler import compile_bundle
from bundle.records import BundleOptions, GrantRecord
from tests.bundle.fixtures import NOW
from tests.bundle.test_compiler import SCHEMA_FOR_KIND, _schema_errors

TINY = BundleOptions(max_object_bytes=6 * 1024)


def grants(count: int, *, per_workload: int, namespaces: int = 3) -> list[GrantRecord]:
    return grant_records(count, NOW, per_workload=per_workload, namespaces=namespaces)


def k8s_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if path.endswith(".yaml")}


def test_a_tiny_budget_splits_every_kind_and_every_part_validates_against_its_schema() -> None:
    records = grants(1_500, per_workload=500)  # three very large workloads
    files = k8s_files(compile_bundle(records, now=NOW, options=TINY).files)
    assert max(len(data) for data in files.values()) <= TINY.max_object_bytes
    kinds: dict[str, int] = {}
    for path, data in files.items():
        document = yaml.safe_load(data)
        kinds[document["kind"]] = kinds.get(document["kind"], 0) + 1
        assert _schema_errors(SCHEMA_FOR_KIND[document["kind"]], document) == [], path
    # Split: more objects than workloads, namespaces or port groups.
    assert kinds["CiliumNetworkPolicy"] > 3 and kinds["AuthorizationPolicy"] > 4 and kinds["ServiceEntry"] > 4


def test_split_objects_together_allow_exactly_what_one_object_would() -> None:
    records = grants(1_500, per_workload=500)
    small = k8s_files(compile_bundle(records, now=NOW, options=TINY).files)
    whole = k8s_files(compile_bundle(records, now=NOW, options=BundleOptions(max_object_bytes=2**30)).files)

    def allowed(files: dict[str, bytes]) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for data in files.values():
            doc = yaml.safe_load(data)
            if doc["kind"] == "ServiceEntry":
                ports = tuple(str(p["number"]) for p in doc["spec"]["ports"])
                found |= {("se", host, *ports) for host in doc["spec"]["hosts"]}
            elif doc["kind"] == "AuthorizationPolicy":
                for rule in doc["spec"]["rules"]:
                    [source], [operation] = rule["from"], rule["to"]
                    [principal] = source["source"]["principals"]
                    found |= {
                        ("ap", principal, h, *operation["operation"]["ports"]) for h in operation["operation"]["hosts"]
                    }
            else:
                selector = tuple(sorted(doc["spec"]["endpointSelector"]["matchLabels"].values()))
                for rule in doc["spec"]["egress"][1:]:
                    port = rule["toPorts"][0]["ports"][0]["port"]
                    found |= {("cnp", *selector, *fqdn.values(), port) for fqdn in rule["toFQDNs"]}
        return found

    assert len(small) > len(whole)
    assert allowed(small) == allowed(whole)
    assert len(allowed(whole)) == 3 * len(records)


def test_adding_or_removing_one_grant_changes_a_constant_number_of_objects() -> None:
    records = grants(1_500, per_workload=500)
    before = k8s_files(compile_bundle(records, now=NOW, options=TINY).files)
    rng = random.Random(11)
    changes = []
    for step in range(20):
        if step % 2:
            removed = rng.randrange(1, 1_501)
            after_records = [r for r in records if r.id != removed]
        else:
            template = rng.choice(records)
            extra = replace(template, id=10_000 + step, host=f"new{step}.vendor.example")
            after_records = [*records, extra]
        after = k8s_files(compile_bundle(after_records, now=NOW, options=TINY).files)
        changes.append(len({p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}))
    # One Cilium part, one ServiceEntry part, one AuthorizationPolicy part; a part
    # that crosses the budget becomes (or comes back from) its two halves.
    assert max(changes) <= 3 * 3
    assert sorted(changes)[len(changes) // 2] <= 3, changes


def test_the_grouping_does_not_depend_on_the_order_or_on_history() -> None:
    records = grants(1_000, per_workload=400)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    assert compile_bundle(records, now=NOW, options=TINY).files == compile_bundle(shuffled, now=NOW, options=TINY).files


def test_the_crd_list_limits_split_objects_too() -> None:
    files = k8s_files(compile_bundle(grants(3_000, per_workload=3_000, namespaces=1), now=NOW).files)
    for data in files.values():
        document = yaml.safe_load(data)
        assert len(document["spec"].get("hosts", [])) <= 256 and len(document["spec"].get("rules", [])) <= 512


def test_an_item_larger_than_the_budget_is_a_clear_error() -> None:
    with pytest.raises(ObjectTooLarge, match="EGRESS_BUNDLE_MAX_OBJECT_BYTES"):
        fit(["x" * 100], key=lambda item: 0, render=lambda part, prefix: "".join(part).encode(), budget=50)


def test_a_hundred_thousand_grants_stay_under_the_default_budget() -> None:
    records = grants(100_000, per_workload=25, namespaces=50)
    bundle = compile_bundle(records, now=NOW)
    files = k8s_files(bundle.files)
    assert max(len(data) for data in files.values()) <= BundleOptions().max_object_bytes
    entries = [path for path in files if path.startswith("istio/serviceentries/")]
    policies = [path for path in files if path.startswith("istio/authorizationpolicies/")]
    # Grouped: hundreds of ServiceEntries (at most 256 hosts each) for 100,000 hosts, not 100,000.
    assert 100_000 / 256 <= len(entries) <= 1_000 and len(policies) >= 50
    for path in entries[:20] + policies[:20]:
        document = yaml.safe_load(files[path])
        assert _schema_errors(SCHEMA_FOR_KIND[document["kind"]], document) == [], path


def test_a_cached_compile_gives_the_same_bytes_as_a_fresh_one_and_reuses_unchanged_objects() -> None:
    from bundle.cache import CompileCache

    cache = CompileCache()
    records = grants(1_500, per_workload=500)
    assert (
        compile_bundle(records, now=NOW, options=TINY, cache=cache).files
        == compile_bundle(records, now=NOW, options=TINY).files
    )
    rng = random.Random(5)
    for step in range(6):
        template = rng.choice(records)
        records = [r for r in records if r.id != rng.choice(records).id]
        records.append(replace(template, id=20_000 + step, host=f"x{step}.vendor.example", port=8000 + step))
        cached = compile_bundle(records, now=NOW, options=TINY, cache=cache)
        fresh = compile_bundle(records, now=NOW, options=TINY)
        assert cached.files == fresh.files and cached.revision == fresh.revision
        assert cached.digests == fresh.digests


def test_the_cache_renders_only_the_objects_a_change_touches() -> None:
    from bundle.cache import CompileCache

    cache = CompileCache()
    records = grants(3_000, per_workload=25, namespaces=10)
    compile_bundle(records, now=NOW, cache=cache)
    counts: list[tuple[int, int]] = []
    original = cache.finish

    def counting_finish() -> None:
        counts.append((cache.hits, cache.misses))
        original()

    cache.finish = counting_finish  # type: ignore[method-assign]
    compile_bundle([*records, replace(records[0], id=99_999, host="one.more.example")], now=NOW, cache=cache)
    [(hits, misses)] = counts
    # One OPA shard, one Cilium policy, one ServiceEntry group, one namespace's policy.
    assert misses == 4 and hits > 200


@settings(max_examples=100, deadline=None)
@given(
    start=st.sets(st.text("abcdefgh", min_size=1, max_size=12), max_size=300),
    steps=st.lists(st.tuples(st.booleans(), st.text("abcdefgh", min_size=1, max_size=12)), max_size=60),
    budget=st.integers(40, 400),
)
def test_refit_splits_a_changing_group_as_fit_splits_it_from_nothing(start: set, steps: list, budget: int) -> None:
    def render(part: Sequence[str], prefix: str) -> bytes:
        return f"{prefix}:{','.join(sorted(part))}".encode()

    def fit_from_nothing(items: set[str]) -> list[tuple[str, bytes]]:
        return fit(
            sorted(items), key=item_key, render=render, budget=budget + 20, size=len, allowed=lambda p: len(p) < 9
        )

    group: SortedItems[str] = SortedItems(item_key)
    items = set(start)
    for item in items:
        group.add(item)
    assert refit(group, render=render, budget=budget + 20, size=len, allowed=lambda p: len(p) < 9) == (
        fit_from_nothing(items)
    )
    for adding, item in steps:
        if adding and item not in items:
            items.add(item)
            group.add(item)
        elif not adding and item in items:
            items.remove(item)
            group.remove(item)
        else:
            continue
        parts = refit(group, render=render, budget=budget + 20, size=len, allowed=lambda p: len(p) < 9)
        assert parts == fit_from_nothing(items)
