"""Bundle benchmarks at scale (issue 11): object sizes, compile, publish, OPA against its floor.

    .venv/bin/python bench/run.py bundles            # 100k figures
    .venv/bin/python bench/run.py bundles --grants 1000000

Figures only; the targets are printed beside them.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bundle.records import GrantRecord  # noqa: E402

PER_WORKLOAD = 25  # the shape: 25 grants per workload, one host each

# The smallest indexed policy answering the same question: grants keyed by
# identity then host, a list of {port, valid_from_ns, expires_at_ns}.
FLOOR_POLICY = """package floor

import rego.v1

default allow := false

allow if {
	some g in data.floor.grants[input.identity][input.host]
	g.port == input.port
	g.valid_from_ns <= time.now_ns()
	time.now_ns() < g.expires_at_ns
}
"""


def grant_records(
    count: int, now: datetime, *, per_workload: int = PER_WORKLOAD, namespaces: int = 50
) -> list[GrantRecord]:
    """``count`` grants, a host each (every tenth a wildcard), ``per_workload`` to a workload."""
    records = []
    for i in range(count):
        workload = i // per_workload
        namespace, service_account = f"team{workload % namespaces}", f"svc{workload}"
        records.append(
            GrantRecord(
                id=i + 1,
                identity=f"spiffe://cluster.local/ns/{namespace}/sa/{service_account}",
                host=f"*.cdn.partner{i}.example" if i % 10 == 0 else f"api.partner{i}.example",
                port=443 if i % 3 else 8443,
                protocol="tcp",
                valid_from=now - timedelta(days=1),
                expires_at=now + timedelta(days=30),
                request_id=i + 1,
                decided_by="approver",
                namespace=namespace,
                service_account=service_account,
            )
        )
    return records


def compile_once(count: int) -> dict[str, Any]:
    """One compile in a fresh process: its peak RSS is the compile's (plus the input records)."""
    from bundle.compiler import compile_bundle

    now = datetime(2026, 6, 1, tzinfo=UTC)
    records = grant_records(count, now)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    bundle = compile_bundle(records, now=now)
    elapsed = time.perf_counter() - started
    objects = {path: len(data) for path, data in bundle.files.items() if path.endswith(".yaml")}
    largest = max(objects, key=objects.__getitem__)
    return {
        "grants": count,
        "seconds": round(elapsed, 2),
        "rss_before_mb": before // 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "files": len(bundle.files),
        "objects": len(objects),
        "largest_object": largest,
        "largest_object_kib": round(objects[largest] / 1024, 1),
        "opa_data_mib": round(sum(len(d) for p, d in bundle.files.items() if p.endswith("data.json")) / 2**20, 1),
        "service_entries": sum(p.startswith("istio/serviceentries/") for p in objects),
        "authorization_policies": sum("/authorizationpolicies/" in p for p in objects),
    }


def bench_compile(counts: list[int]) -> None:
    """Targets: every object <= 512 KiB; 100k compile <= 2 s (the earlier target)."""
    for count in counts:
        out = subprocess.run(
            [sys.executable, __file__, "compile-once", str(count)], capture_output=True, text=True, check=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"compile {r['grants']:>9,} grants: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']} MB "
            f"({r['rss_before_mb']} MB before, with the input records), {r['files']:,} files "
            f"({r['service_entries']:,} ServiceEntries, {r['authorization_policies']:,} AuthorizationPolicies), "
            f"largest object {r['largest_object_kib']} KiB ({r['largest_object']}), OPA data {r['opa_data_mib']} MiB "
            f"(target: every object <= 512 KiB)"
        )


def bench_opa_floor(count: int = 100_000) -> None:
    """Targets: allow <= 1.5x and decision <= 2x the smallest indexed policy, same run, same grants."""
    from opa_bindings import OpaEngine

    from bundle.compiler import compile_bundle
    from bundle.emitters.opa import load_data

    now = datetime.now(UTC)
    records = grant_records(count, now)
    files = compile_bundle(records, now=now).files
    bundle_engine = OpaEngine()
    bundle_engine.add_policy("egress/policy.rego", files["opa/egress/policy.rego"].decode())
    bundle_engine.add_data(load_data(files))
    floor: dict[str, dict[str, list[dict[str, int]]]] = {}
    for r in records:
        floor.setdefault(r.identity, {}).setdefault(r.host, []).append(
            {"port": r.port, "valid_from_ns": r.valid_from_ns, "expires_at_ns": r.expires_at_ns}
        )
    floor_engine = OpaEngine()
    floor_engine.add_policy("floor.rego", FLOOR_POLICY)
    floor_engine.add_data({"floor": {"grants": floor}})
    # Exact names the floor can answer too (it has no wildcards), all allowed.
    inputs = [
        {"identity": r.identity, "host": r.host, "port": r.port, "protocol": "tcp"}
        for r in records[1 :: max(1, count // 700)]
        if not r.wildcard
    ][:600]
    denied = [{**request, "port": 1} for request in inputs]
    cases = {
        "floor allow": (floor_engine, "floor.allow", inputs),
        "bundle allow": (bundle_engine, "egress.allow", inputs),
        "bundle decision": (bundle_engine, "egress.decision", inputs),
        "bundle decision (denied)": (bundle_engine, "egress.decision", denied),
    }
    assert all(bundle_engine.eval_document("egress.allow", request) is True for request in inputs[:50])
    best: dict[str, float] = {}
    # Interleaved rounds, best of each: the 2-core machine is shared, so the
    # minimum is the figure least disturbed by other work.
    for _ in range(15):
        for name, (engine, query, requests) in cases.items():
            started = time.perf_counter()
            for request in requests:
                engine.eval_document(query, request)
            best[name] = min(best.get(name, 1.0), (time.perf_counter() - started) / len(requests))
    base = best["floor allow"]
    print(
        f"OPA at {count:,} grants (best of 15 interleaved rounds, us per query through the bindings): "
        + ", ".join(f"{name} {value * 1e6:.1f} ({value / base:.2f}x)" for name, value in best.items())
        + " (target: allow <= 1.5x, decision <= 2x the floor)"
    )


def _plumbing_tree(git_dir: str, base: str, changed: dict[str, bytes], removed: list[str]) -> str:
    """The same incremental tree built with git plumbing (the alternative measured against pygit2)."""
    env = {**os.environ, "GIT_INDEX_FILE": f"{git_dir}/bench-index"}

    def git(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(
            ["git", "--git-dir", git_dir, *args], input=data, env=env, capture_output=True, check=True
        ).stdout.decode()

    git("read-tree", base)
    lines = [
        f"100644 blob {git('hash-object', '-w', '--stdin', data=data).strip()}\t{path}"
        for path, data in changed.items()
    ]
    lines += [f"0 {'0' * 40}\t{path}" for path in removed]
    git("update-index", "--index-info", data=("\n".join(lines) + "\n").encode())
    tree = git("write-tree").strip()
    git("commit-tree", tree, "-p", base, "-m", "bench", data=b"")
    return tree


def bench_publish(count: int = 100_000, changes: int = 5) -> None:
    """Targets: one changed grant at 100k <= 1 s trigger to pushed commit, and <= 1/20 of a full publish.

    The publish path of the portal without the database: the IncrementalCompiler
    (as ``publish_bundle`` keeps it) and the policy repository. Each figure runs
    from the records to the pushed commit.
    """
    import tempfile
    from dataclasses import replace

    import pygit2

    from bundle.compiler import compile_bundle
    from bundle.incremental import IncrementalCompiler
    from bundle.policy_repository import PolicyRepository

    now = datetime.now(UTC)
    records = {record.id: record for record in grant_records(count, now)}
    compiler = IncrementalCompiler()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        repository = PolicyRepository(url=f"{tmp}/policy.git", work_dir=Path(tmp) / "work")
        # compile_bundle first: the first compile in a process also fills the name and key caches.
        started = time.perf_counter()
        reference = compile_bundle(records.values(), now=now)
        reference_seconds = time.perf_counter() - started
        started = time.perf_counter()
        bundle = compiler.compile(records, now=now)
        compiled = time.perf_counter() - started
        repository.publish(bundle, trigger="bench: full")
        full = time.perf_counter() - started
        assert reference.files == bundle.files, "the incremental compiler must give compile_bundle's bytes"
        # The full publish to compare with: whichever compile was faster, plus the first push.
        full = min(full, full - compiled + reference_seconds)
        one: list[tuple[float, float]] = []
        for step in range(changes):
            # Approving one grant: a new host for an existing workload; the clock moves on.
            now += timedelta(seconds=1)
            grant = replace(records[step * 97 + 1], id=count + step + 1, host=f"new{step}.vendor.example")
            records = {**records, grant.id: grant}
            started = time.perf_counter()
            previous, bundle = bundle, compiler.compile(records, now=now)
            compile_seconds = time.perf_counter() - started
            result = repository.publish(bundle, trigger="bench: one grant")
            one.append((compile_seconds, time.perf_counter() - started))
            assert result.status == "published" and len(result.added) == 1
        assert compiler.full_compiles == 1
        assert compile_bundle(records.values(), now=now).files == bundle.files
        repo = pygit2.Repository(str(Path(tmp) / "work"))
        head = repo.references[repository.remote_ref].peel(pygit2.Commit)
        changed = {p: bundle.files[p] for p, sha in bundle.digests.items() if previous.digests.get(p) != sha}
        removed = sorted(previous.digests.keys() - bundle.digests.keys())
        started = time.perf_counter()
        plumbing_tree = _plumbing_tree(str(Path(tmp) / "work"), str(head.parents[0].id), changed, removed)
        plumbing = time.perf_counter() - started
        started = time.perf_counter()
        written, stale = repository._changes(head.parents[0], bundle, previous)
        libgit2_tree = repository._tree(repo, head.parents[0], bundle, written, stale)
        libgit2 = time.perf_counter() - started
        assert str(libgit2_tree) == str(head.tree.id)
        assert plumbing_tree == str(head.tree.id), "git plumbing and pygit2 must build the same tree"
        started = time.perf_counter()
        # The safety net: a compile from nothing and a fresh clone compare every file.
        rebuilt = PolicyRepository(url=f"{tmp}/policy.git", work_dir=Path(tmp) / "fresh").publish(
            IncrementalCompiler().compile(records, now=now), trigger="bench: full rebuild", refresh=True
        )
        rebuild = time.perf_counter() - started
    median = sorted(one, key=lambda pair: pair[1])[len(one) // 2]
    print(
        f"publish at {count:,} grants: full {full:.2f} s (the faster compile plus the first push; incremental "
        f"compile from nothing {compiled:.2f} s, compile_bundle {reference_seconds:.2f} s (first in the process), "
        f"same bytes; {len(bundle.files):,} files); one changed grant "
        f"{median[1]:.2f} s median of {changes} (compile {median[0]:.3f} s, {len(changed)} files written), "
        f"{median[1] / full:.3f} of the full publish; full rebuild from nothing in a fresh clone {rebuild:.2f} s "
        f"({rebuilt.status}: byte-identical tree); building that one-grant tree: pygit2 {libgit2 * 1000:.0f} ms, "
        f"git plumbing {plumbing * 1000:.0f} ms (target: one grant <= 1 s and <= 1/20 of the full publish)"
    )


def bench_long_poll(rounds: int = 5) -> None:
    """Target: a waiting OPA sees a new revision within 1 s of the approval's commit (plus the coalescing window)."""
    import tempfile
    import threading
    from datetime import timedelta as days

    from django.conf import settings
    from django.test import Client

    from approvals.services import approve_request
    from bench.run import _reset, bench_team
    from exceptions.services.publications import publish_bundle
    from exceptions.services.requests import submit_request

    _reset()
    tmp = tempfile.mkdtemp()
    settings.POLICY_REPO_URL, settings.POLICY_WORK_DIR = f"{tmp}/policy.git", Path(tmp) / "work"
    settings.OPA_BUNDLE_TOKEN = "bench-token"  # noqa: S105 - a local benchmark
    auth = {"HTTP_AUTHORIZATION": "Bearer bench-token", "HTTP_HOST": "localhost"}
    requester, approver, workload = bench_team()
    latencies = []
    for step in range(rounds):
        request = submit_request(
            actor=requester,
            workload=workload,
            destinations=[{"host": f"api{step}.partner.example", "port": 443}],
            purpose="partner_api",
            data_class="internal",
            justification="Benchmark of long-poll wake-up.",
            lifetime=days(days=1),
        )
        etag = Client().get("/bundles/egress.tar.gz", **auth)["ETag"]
        answered: list[float] = []

        def wait_for_it(etag: str = etag, answered: list[float] = answered) -> None:
            response = Client().get("/bundles/egress.tar.gz", HTTP_IF_NONE_MATCH=etag, HTTP_PREFER="wait=30", **auth)
            assert response.status_code == 200
            answered.append(time.perf_counter())

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(0.5)
        approve_request(actor=approver, request=request)
        approved = time.perf_counter()
        # What the relay does after the coalescing window: engines see the change with its publish.
        publish_bundle(trigger="bench: long poll")
        waiter.join()
        latencies.append(answered[0] - approved)
    print(
        f"long poll: new revision delivered {statistics.median(latencies) * 1000:.0f} ms (median of {rounds}, "
        f"max {max(latencies) * 1000:.0f} ms) after the approval committed, its publish run at once (the relay "
        f"adds the {settings.BUNDLE_PUBLISH_DELAY_SECONDS} s coalescing window) and its NOTIFY waking the waiter"
    )


def seed_partner_grants(count: int, *, team_name: str = "Bench") -> tuple[list[Any], Any]:
    """``count`` open grants in the issue's shape (25 a workload, a host each) on the bench database.

    Returns the requests and a function making one more such grant (request, number) for a bench
    that adds grants later (bench_publish_from_database, bench/worker_publish.py).
    """
    from datetime import timedelta as span

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone
    from django.utils.text import slugify

    from exceptions.models import ExceptionRequest, Grant, Team, Workload

    now = timezone.now()
    user = get_user_model().objects.get_or_create(username="bench")[0]
    team = Team.objects.create(name=team_name, slug=slugify(team_name))
    workloads = Workload.objects.bulk_create(
        Workload(
            team=team,
            name=f"svc{i}",
            identity=f"spiffe://cluster.local/ns/team{i % 50}/sa/svc{i}",
            identity_kind="kubernetes",
            namespace=f"team{i % 50}",
            service_account=f"svc{i}",
            environment="dev",
        )
        for i in range(max(1, count // PER_WORKLOAD))
    )
    requests = ExceptionRequest.objects.bulk_create(
        ExceptionRequest(
            workload=w,
            requester=user,
            purpose="telemetry",
            data_class="internal",
            justification="bench",
            lifetime=span(days=30),
            status="active",
            risk_tier="low",
        )
        for w in workloads
    )

    def grant(request: ExceptionRequest, i: int) -> Grant:
        return Grant(
            request=request,
            workload=request.workload,
            identity=request.workload.identity,
            host=f"api.partner{i}.example",
            port=443,
            valid_from=now - span(days=1),
            expires_at=now + span(days=30),
            status="active",
        )

    Grant.objects.bulk_create(
        (grant(r, n * PER_WORKLOAD + j) for n, r in enumerate(requests) for j in range(PER_WORKLOAD)), batch_size=5000
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # a fresh bulk load has no planner statistics
    return requests, grant


def bench_publish_from_database(count: int = 100_000, changes: int = 3) -> None:
    """Target: one new grant at 100k, trigger to pushed commit <= 1 s, through the portal's publish_bundle."""
    import tempfile

    from django.conf import settings

    from bench.run import _reset
    from exceptions.models import Grant
    from exceptions.selectors import bundle_records
    from exceptions.services.publications import publish_bundle

    _reset()
    requests, grant = seed_partner_grants(count)
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        settings.POLICY_REPO_URL, settings.POLICY_WORK_DIR = f"{tmp}/policy.git", Path(tmp) / "work"
        started = time.perf_counter()
        publish_bundle(trigger="bench: full")
        full = time.perf_counter() - started
        started = time.perf_counter()
        bundle_records()
        read = time.perf_counter() - started
        one = []
        for step in range(changes):
            Grant.objects.bulk_create([grant(requests[step], count + step)])  # the approval's grant row
            started = time.perf_counter()
            publication = publish_bundle(trigger="bench: one grant")
            one.append(time.perf_counter() - started)
            assert publication.status == "published" and publication.added == 1
        started = time.perf_counter()
        # The five-minute safety net: read everything, compile from nothing, compare every file.
        refreshed = publish_bundle(trigger="bench: refresh", refresh=True)
        refresh = time.perf_counter() - started
    print(
        f"publish_bundle from PostgreSQL at {count:,} grants: full {full:.2f} s; one new grant "
        f"{statistics.median(one):.2f} s median of {changes} (a full read of the {count:,} open grants takes "
        f"{read:.2f} s; a publish reads their ids and the new rows, and compiles what changed), "
        f"{statistics.median(one) / full:.3f} of the full publish; refresh (full read, compile from nothing) "
        f"{refresh:.2f} s ({refreshed.status}) (target <= 1 s, <= 1/20); bundle endpoint polls: "
        "bench/bundle_polls.py"
    )


def run(grants: int) -> None:
    """``make bench`` runs the 100k figures; ``--grants 1000000`` adds the 1M compile."""
    bench_compile(sorted({100_000, max(grants, 100_000)}))
    bench_opa_floor()
    bench_publish()
    bench_publish_from_database()
    bench_long_poll()


def main(args: list[str]) -> None:
    if args and args[0] == "compile-once":
        print(json.dumps(compile_once(int(args[1]))))


if __name__ == "__main__":
    main(sys.argv[1:])
