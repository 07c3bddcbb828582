"""Issue 18 §2: thousands of OPA engines long-polling one async bundle server, woken by one publish.

    .venv/bin/python bench/run.py long-polls                          # 5,000 waiters, 1,000 grants
    .venv/bin/python bench/run.py long-polls --waiters 500 --grants 100 --uvicorn-workers 2

The bundle server runs as deployments run it (``uvicorn egress_portal.asgi:bundles``,
uvloop and httptools) on PostgreSQL. ``--waiters`` clients on loopback (asyncio streams
in this process, one socket each) ask for the bundle with the served ETag and
``Prefer: wait=120`` and wait. Then the portal stores a new revision as a publish does
(``store_artifact``: the pointer moves and ``NOTIFY`` fires in one transaction) and
each client times its answer from the start of that transaction (an upper bound: the commit
comes later): the response headers (the wake) and the
whole archive. Printed: wake latency p50/p95/max against the target (5,000 waiters,
p95 <= 1 s), the server's RSS and CPU while holding the waiters and during the wake,
and the load average. The clients share the machine's cores with the server: with a large
archive (``--long-poll-grants 100000``, 749 KiB, 3.7 GB for 5,000 engines) the run copies
gigabytes over loopback and the clients' timestamps wait for a core too.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bundle_polls import _cpu_seconds, _free_port, _load
from bench.servers import listening

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-bundle-token"  # noqa: S105 - the test settings' token, a local benchmark
TARGET_WAITERS = 5_000
TARGET_P95 = 1.0
CONNECT_BATCH = 500


@dataclass
class Waiter:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int = 0
    etag: str = ""
    headers_at: float = 0.0
    done_at: float = 0.0
    size: int = 0
    error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _server_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(p) for p in children.read_text().split())] if children.exists() else [pid]


def _rss_mib(pid: int) -> float:
    total = 0
    for each in _server_pids(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def _start_uvicorn(port: int, workers: int, database_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test",
        "DATABASE_URL": database_url,
        "DB_CONN_MAX_AGE": "60",
        "OPA_LONG_POLL_MAX_WAIT_SECONDS": "300",
        "OPA_LONG_POLL_RECHECK_SECONDS": "5",
    }
    command = [sys.executable, "-m", "uvicorn", "egress_portal.asgi:bundles", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers), "--no-access-log", "--backlog", "4096"]
    command += ["--timeout-keep-alive", "300", "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    return listening(server, port, name="uvicorn", seconds=30)


async def _request(port: int, etag: str, wait: int) -> Waiter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /bundles/egress.tar.gz HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"If-None-Match: {etag}\r\nPrefer: wait={wait}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return Waiter(reader, writer)


async def _answer(waiter: Waiter) -> None:
    try:
        head = await waiter.reader.readuntil(b"\r\n\r\n")
        waiter.headers_at = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        waiter.status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        waiter.etag = headers.get("etag", "")
        waiter.size = int(headers.get("content-length", "0"))
        await waiter.reader.readexactly(waiter.size)
        waiter.done_at = time.perf_counter()
    except Exception as exc:
        waiter.error = repr(exc)
    finally:
        waiter.writer.close()


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"min {ordered[0] * 1000:.0f} ms, p50 {statistics.median(ordered) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )


def bench_long_polls(waiters: int = TARGET_WAITERS, grants: int = 1_000, workers: int = 1) -> None:
    import uvloop
    from django.conf import settings
    from django.db import connection

    from bench.run import BENCH_DB, _reset
    from bench.traffic import _population
    from exceptions.models import BundleArtifact, ServedBundle
    from exceptions.services.publications import ensure_served_bundle

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < waiters + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, waiters + 1000), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < waiters + 100:
        print(f"long polls: skipped, {waiters:,} waiters need {waiters + 100:,} file descriptors (ulimit -n {soft})")
        return
    _reset()
    ServedBundle.objects.all().delete()
    BundleArtifact.objects.all().delete()
    first = _population(grants, per_request=25, valid_days_ago=1)[0]
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        settings.POLICY_REPO_URL, settings.POLICY_WORK_DIR = f"{tmp}/policy.git", Path(tmp) / "work"
        revision, _ = ensure_served_bundle()
        size = BundleArtifact.objects.get(revision=revision).size
        port = _free_port()
        server = _start_uvicorn(port, workers, BENCH_DB)
        try:
            uvloop.run(_run(port, server.pid, waiters, f'"{revision}"', first, size, workers, grants))
        finally:
            server.terminate()
            server.wait(timeout=30)
            connection.close()


async def _run(
    port: int, pid: int, count: int, etag: str, first_grant: Any, size: int, workers: int, grants: int
) -> None:
    from exceptions.models import Grant
    from exceptions.services.artifacts import store_artifact
    from exceptions.services.publications import current_bundle

    await _answer(await _request(port, '"none"', 0))  # the first poll: the server has read the pointer
    idle_rss = _rss_mib(pid)
    print(
        f"long polls: {count:,} waiting clients on loopback against uvicorn egress_portal.asgi:bundles "
        f"(--workers {workers}, uvloop, httptools) on PostgreSQL; {grants:,} grants, archive {size / 1024:.0f} KiB; "
        f"{_load()}"
    )
    started = time.perf_counter()
    held: list[Waiter] = []
    for begin in range(0, count, CONNECT_BATCH):
        held += await asyncio.gather(
            *(_request(port, etag, 240) for _ in range(begin, min(begin + CONNECT_BATCH, count)))
        )
    for waiter in held:
        waiter.task = asyncio.ensure_future(_answer(waiter))
    connected = time.perf_counter() - started
    await asyncio.sleep(3)  # every request read and waiting
    early = [w for w in held if w.task is not None and w.task.done()]
    cpu_before_hold, hold_started = _cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(5)
    hold_cpu = (_cpu_seconds(pid) - cpu_before_hold) / (time.perf_counter() - hold_started)
    holding_rss = _rss_mib(pid)
    print(
        f"  holding: {count:,} connected in {connected:.1f} s, {len(early)} answered before the publish; "
        f"server RSS {idle_rss:.0f} MiB idle -> {holding_rss:.0f} MiB holding "
        f"({(holding_rss - idle_rss) * 1024 / count:.1f} KiB a waiter), "
        f"CPU {hold_cpu * 100:.1f} % of a core while holding"
    )

    def publish() -> tuple[str, float, float]:
        grant = Grant.objects.select_related("request").get(pk=first_grant.pk)
        Grant.objects.create(
            request=grant.request, workload=grant.workload, identity=grant.identity, host="new.bench.example",
            port=443, valid_from=grant.valid_from, expires_at=grant.expires_at, status="active",
        )  # fmt: skip
        bundle = current_bundle()
        before = time.perf_counter()
        revision = store_artifact(bundle=bundle, trigger="bench: long polls")
        return revision, before, time.perf_counter()

    cpu_before_wake = _cpu_seconds(pid)
    revision, store_began, committed = await asyncio.get_running_loop().run_in_executor(None, publish)
    await asyncio.gather(*(w.task for w in held if w.task is not None))
    wake_cpu = _cpu_seconds(pid) - cpu_before_wake
    answered = [w for w in held if not w.error and w.status == 200 and w.etag == f'"{revision}"']
    wrong = [w for w in held if w not in answered]
    heads = [w.headers_at - store_began for w in answered]
    whole = [w.done_at - store_began for w in answered]
    print(
        f"  publish: the storing transaction took {(committed - store_began) * 1000:.0f} ms; "
        f"{len(answered):,} of {count:,} got the new revision ({len(wrong)} other answers"
        + (f", e.g. {wrong[0].status} {wrong[0].error}" if wrong else "")
        + ")"
    )
    if answered:
        p95 = sorted(heads)[min(len(heads) - 1, int(len(heads) * 0.95))]
        met = "met" if p95 <= TARGET_P95 and len(answered) >= TARGET_WAITERS else "NOT met"
        print(f"  wake (response headers) after the publish began storing: {_percentiles(heads)}")
        print(f"  whole archive received after the publish began storing: {_percentiles(whole)}")
        print(
            f"  target: {TARGET_WAITERS:,} waiters woken with p95 <= {TARGET_P95:g} s; "
            f"measured: {len(answered):,} waiters, p95 {p95:.2f} s ({met})"
        )
    print(
        f"  server: {wake_cpu:.2f} CPU-s for the wake ({wake_cpu / max(len(answered), 1) * 1e6:.0f} µs a waiter), "
        f"RSS {_rss_mib(pid):.0f} MiB after; {_load()}"
    )
