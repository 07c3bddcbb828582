"""Approval -> pushed commit with one and with two real Celery worker processes (issue 18 §3).

The workers share one policy work dir (one host, the default POLICY_WORK_DIR) but each has its
own memory of its last push; beat relays the outbox (publishes coalesced for BUNDLE_PUBLISH_DELAY_SECONDS, audit
checkpoints pushed to the same branch). Printed per configuration: approval -> pushed commit
p50/p95, the attempts of every publish, and the first publish of a cold worker.

    .venv/bin/python bench/run.py worker-publish --grants 100000
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _approve_and_wait(
    requester: Any, approver: Any, workload: Any, step: int, timeout: float = 120
) -> tuple[float, Any]:
    """Approve one request; the seconds until its grant's publication was pushed, and that publication."""
    from approvals.services import approve_request
    from exceptions.models import BundlePublication
    from exceptions.services.requests import submit_request

    request = submit_request(
        actor=requester,
        workload=workload,
        destinations=[{"host": f"api{step}.worker-bench.example", "port": 443}],
        purpose="partner_api",
        data_class="internal",
        justification="Benchmark of publishing on any worker.",
        lifetime=timedelta(days=1),
    )
    last = BundlePublication.objects.order_by("-id").values_list("id", flat=True).first() or 0
    approve_request(actor=approver, request=request)
    approved = time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publication = BundlePublication.objects.filter(id__gt=last, status="published").order_by("id").first()
        if publication is not None:
            return publication.created_at.timestamp() - approved, publication
        time.sleep(0.02)
    raise RuntimeError(f"no publication within {timeout:.0f} s of approval {step}")


def _run(workers: int, rounds: int, tmp: str, requester: Any, approver: Any, workload: Any, first: int) -> str:
    from django.conf import settings

    from egress_portal.celery import app
    from egress_portal.worker_process import start_beat, start_worker, stop_worker, wait_until_ready
    from exceptions.models import BundlePublication

    remote = f"{tmp}/policy.git"
    base = {
        **os.environ,
        "POLICY_REPO_URL": remote,
        "OUTBOX_NUDGE": "true",
        "EGRESS_AUTO_PUBLISH": "true",
        "BUNDLE_PUBLISH_DELAY_SECONDS": str(settings.BUNDLE_PUBLISH_DELAY_SECONDS),
        # A checkpoint after (nearly) every publish: the branch moves under the publisher between approvals.
        "AUDIT_CHECKPOINT_DELAY_SECONDS": "1",
    }

    def env(name: str) -> dict[str, str]:
        # One host: the workers share the cache clone (the default POLICY_WORK_DIR), not their memories.
        return {**base, "POLICY_WORK_DIR": f"{tmp}/policy-work", "AUDIT_CHECKPOINT_WORK_DIR": f"{tmp}/{name}-audit"}

    app.control.purge()
    processes, names = [], [f"bench-publish-{workers}-{i}@localhost" for i in range(workers)]
    beat = start_beat(env=env("beat"))
    try:
        for i, name in enumerate(names):
            processes.append(start_worker(hostname=name, env=env(f"w{workers}-{i}")))
        for process, name in zip(processes, names, strict=True):
            wait_until_ready(app, process, name)
        # Every worker's first publish (cold: a full read, a compile from nothing, a fetch of the branch).
        cold = []
        for step in range(workers):
            seconds, publication = _approve_and_wait(requester, approver, workload, first + step)
            cold.append((seconds, publication.duration_ms, publication.attempts))
            time.sleep(1.0)
        latencies, attempts, durations, triggers = [], [], [], []
        for step in range(rounds):
            seconds, publication = _approve_and_wait(requester, approver, workload, first + workers + step)
            latencies.append(seconds)
            attempts.append(publication.attempts)
            durations.append(publication.duration_ms)
            triggers.append(publication.trigger)
            time.sleep(1.5)  # an audit checkpoint lands on the branch between publishes
        load = _uptime()
        checkpoints = int(
            subprocess.run(
                ["git", "--git-dir", remote, "rev-list", "--count", "--grep", "Audit checkpoint", "main"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or 0
        )
    finally:
        for process in processes:
            stop_worker(process)
        stop_worker(beat)
    ordered = sorted(latencies)
    p95 = ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]  # nearest rank
    retried = sum(1 for a in attempts if a > 1)
    failed = BundlePublication.objects.filter(status="failed").count()
    return (
        f"{workers} worker process(es): approval -> pushed commit p50 {statistics.median(latencies):.2f} s, "
        f"p95 {p95:.2f} s, max {max(latencies):.2f} s over {rounds} approvals (publish itself p50 "
        f"{statistics.median(durations)} ms, max {max(durations)} ms); attempts {attempts} ({retried} second "
        f"attempts, {failed} failed publishes so far); first publishes of the cold workers "
        f"{', '.join(f'{s:.2f} s (publish {d} ms, attempts {a})' for s, d, a in cold)}; "
        f"{checkpoints} checkpoint commits on the branch; load: {load}; each approval "
        f"{', '.join(f'{s:.2f} s ({d} ms, {t})' for s, d, t in zip(latencies, durations, triggers, strict=True))}"
    )


def bench_worker_publish(grants: int = 100_000, rounds: int = 20) -> None:
    """Target: approval -> pushed commit p95 with two workers no worse than one (<= 3 s, 2 s coalescing)."""
    from django.conf import settings

    from audit.models import AuditCheckpoint
    from bench.bundles import seed_partner_grants
    from bench.run import _reset, bench_team
    from exceptions.models import PolicyDrift
    from foundation.outbox.models import OutboxMessage

    settings.EGRESS_AUTO_PUBLISH = True
    settings.OUTBOX_NUDGE = True
    for workers in (1, 2):
        _reset()
        # The audit chain restarts: so do its checkpoints (and the branch, a new one per configuration).
        for model in (OutboxMessage, AuditCheckpoint, PolicyDrift):
            model.objects.all().delete()
        requester, approver, workload = bench_team()
        started = time.perf_counter()
        seed_partner_grants(grants, team_name="Bench bulk")
        created = time.perf_counter() - started
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            settings.POLICY_REPO_URL, settings.POLICY_WORK_DIR = f"{tmp}/policy.git", Path(tmp) / "bench-policy"
            line = _run(workers, rounds, tmp, requester, approver, workload, first=workers * 1000)
        print(f"worker publish at {grants:,} grants ({created:.0f} s to create them): {line}", flush=True)
