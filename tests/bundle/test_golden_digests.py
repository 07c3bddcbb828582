"""1,000 varied grants against the digests of every file the compiler made of them.

``golden_digests.json`` holds the SHA-256 of every output file (path -> digest)
of a full compile under two option sets, and the tree of every step of an
incremental compile over a sequence of changes. It was written by the compiler
as it stood before the emitter seam (issue 16 §5), so a refactor of the
compiler is held to the very bytes it produced then. Regenerate with
``UPDATE_GOLDEN=1`` only after an intended change of the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bundle.cache import CompileCache
from bundle.compiler import Bundle, compile_bundle
from bundle.incremental import IncrementalCompiler
from bundle.records import BundleOptions, GrantRecord
from tests.bundle.fixtures import NOW, TEAMS, varied_records

GOLDEN = Path(__file__).parent / "golden_digests.json"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
HOUR = timedelta(hours=1)

OPTIONS = {
    "default": BundleOptions(),
    # A budget small enough to split Cilium policies, ServiceEntries and AuthorizationPolicies;
    # every option that reaches the output set to something other than its default.
    "split": BundleOptions(
        istio_namespace="mesh-egress",
        egress_gateway_labels=(("app", "egress"), ("istio", "egressgateway")),
        dns_namespace="dns",
        dns_labels=(("k8s-app", "coredns"),),
        managed_by="egress-portal-golden",
        max_object_bytes=1200,
        security_owner="@org/security",
        owner_template="@org/{team}-owners",
        owners=(("payments", "@org/payments-oncall"),),
        repository_prefix="policies/egress",
        provider_ranges=(("aws", "1732800000", "2026-11-28-10-00-00"),),
    ),
}


def digests(bundle: Bundle) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in bundle.files.items()}


def tree(bundle: Bundle) -> str:
    """One digest for the whole tree: every path with the digest of its bytes."""
    lines = "".join(f"{path}\0{sha}\n" for path, sha in sorted(digests(bundle).items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def _store(section: str, key: str, value: object) -> None:
    golden = _golden()
    golden.setdefault(section, {})[key] = value
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


def test_the_varied_records_are_as_varied_as_they_claim() -> None:
    records = varied_records()
    assert len(records) == 1_000 and len({r.id for r in records}) == 1_000
    assert any(r.wildcard for r in records) and any(not r.wildcard and not r.service for r in records)
    assert {r.protocol for r in records} == {"tcp", "udp"} and len({r.port for r in records}) >= 6
    assert len({r.identity for r in records}) >= 100 and {r.team for r in records} == set(TEAMS)
    assert len({r.namespace for r in records if r.namespace}) >= 20
    assert any(not r.is_kubernetes and r.identity.startswith("spiffe://") for r in records)
    assert any(not r.identity.startswith("spiffe://") for r in records)
    assert any(r.expires_at <= NOW for r in records) and any(r.valid_from > NOW for r in records)
    assert any(NOW < r.expires_at <= NOW + 3 * 24 * HOUR for r in records)
    assert any(r.service and r.cidrs for r in records) and any(r.service and not r.cidrs for r in records)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_full_compile_of_1000_varied_grants_gives_the_golden_bytes(name: str) -> None:
    bundle = compile_bundle(varied_records(), now=NOW, options=OPTIONS[name])
    if UPDATE:
        _store("full", name, digests(bundle))
    golden = _golden()["full"][name]
    assert sorted(digests(bundle)) == sorted(golden), "the set of files changed"
    differing = sorted(path for path, sha in digests(bundle).items() if golden[path] != sha)
    assert differing == [], f"files differ from their golden digests: {differing[:10]}"
    if name == "split":
        # The budget really split objects of every kind (or the golden file would prove less).
        parts = [path for path in golden if re.search(r"-[01]+\.yaml$", path)]
        assert any(path.startswith("teams/") and "/cilium/" in path for path in parts)
        assert any(path.startswith("istio/serviceentries/") for path in parts)
        assert any(path.startswith("teams/") and "/authorizationpolicies/" in path for path in parts)
        assert "CODEOWNERS" in golden
    # The compile cache, cold then warm, gives the same bytes.
    cache = CompileCache()
    for _ in range(2):
        assert digests(compile_bundle(varied_records(), now=NOW, options=OPTIONS[name], cache=cache)) == golden


def _steps() -> list[tuple[str, Callable[[dict[int, GrantRecord]], None], timedelta, str, bool]]:
    """(label, change of the records, time since NOW, option set, full): applied in order."""
    pool = {r.id: r for r in varied_records(1_400)}

    def add(first: int, last: int) -> Callable[[dict[int, GrantRecord]], None]:
        return lambda records: records.update((i, pool[i]) for i in range(first, last + 1))

    def remove(every: int, offset: int) -> Callable[[dict[int, GrantRecord]], None]:
        def change(records: dict[int, GrantRecord]) -> None:
            for i in [i for i in sorted(records) if i % every == offset]:
                del records[i]

        return change

    def edit(records: dict[int, GrantRecord]) -> None:
        for n, i in enumerate([i for i in sorted(records) if i % 17 == 3][:40]):
            record = records[i]
            records[i] = [
                replace(record, host=f"moved{i}.vendor.example"),
                replace(record, team="" if record.team else "platform"),
                replace(record, expires_at=record.expires_at + 36 * HOUR),
                replace(record, valid_from=NOW + 30 * HOUR, expires_at=NOW + 90 * HOUR),
                replace(record, port=8443, tls_required=not record.tls_required),
            ][n % 5]

    def last_and_new_ranges(records: dict[int, GrantRecord]) -> None:
        add(901, 1_000)(records)
        for i, record in list(records.items()):
            if record.service == "aws:S3/eu-west-1":
                records[i] = replace(record, cidrs=(*record.cidrs, "3.5.72.0/23"))

    def nothing(records: dict[int, GrantRecord]) -> None:
        pass

    return [
        ("first 700 grants", add(1, 700), timedelta(0), "default", False),
        ("200 more", add(701, 900), timedelta(0), "default", False),
        ("every eleventh removed", remove(11, 4), timedelta(0), "default", False),
        ("40 edited: host, team, window, schedule, port", edit, timedelta(0), "default", False),
        ("two hours later", nothing, 2 * HOUR, "default", False),
        ("a day later", nothing, 26 * HOUR, "default", False),
        ("the last 100 and new provider ranges", last_and_new_ranges, 26 * HOUR, "default", False),
        ("the split options", nothing, 26 * HOUR, "split", False),
        ("200 more under the split budget", add(1_001, 1_200), 27 * HOUR, "split", False),
        ("every seventh removed under the split budget", remove(7, 2), 27 * HOUR, "split", False),
        ("three days later", nothing, 99 * HOUR, "split", False),
        ("a day back: from scratch", add(1_201, 1_400), 75 * HOUR, "split", False),
        ("refreshed", nothing, 75 * HOUR, "split", True),
    ]  # fmt: skip


def test_incremental_compiles_over_a_sequence_of_changes_give_the_golden_trees() -> None:
    compiler = IncrementalCompiler()
    records: dict[int, GrantRecord] = {}
    trees: list[Mapping[str, object]] = []
    for label, change, since, name, full in _steps():
        change(records)
        incremental = compiler.compile(dict(records), now=NOW + since, options=OPTIONS[name], full=full)
        whole = compile_bundle(list(records.values()), now=NOW + since, options=OPTIONS[name])
        assert incremental.files == whole.files, label
        assert incremental.digests == whole.digests and incremental.revision == whole.revision, label
        trees.append({"step": label, "files": len(whole.files), "revision": whole.revision, "tree": tree(whole)})
    assert compiler.full_compiles == 4  # the first, the options, the step back, the refresh
    if UPDATE:
        _store("incremental", "steps", trees)
    assert trees == _golden()["incremental"]["steps"]
