"""Issue 18 §1: a bundle poll against a static file of the same size, from the same gunicorn.

    .venv/bin/python bench/run.py bundle-polls                      # 100,000 grants, 10 s a case
    .venv/bin/python bench/run.py bundle-polls --grants 1000 --poll-seconds 2

The portal runs under gunicorn ``-w 2 --threads 8`` (as the issue measured it) on
PostgreSQL, with static files collected and served by WhiteNoise as in production.
After one publish of ``--grants`` open grants, 1, 8 and 32 keep-alive pollers ask
for (a) the bundle with the current ETag (304), (b) a static file of the archive's
size with its ETag (304), (c) the bundle (200) and (d) the static file (200). Each
case prints requests/s, p50/p95 and the server's CPU-milliseconds per request
(gunicorn's processes, from /proc), and the bundle's ratio to the static file.
Targets: a 304 costs at most 3x a static 304; a 200 at most the static 200 plus 20 %.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.servers import listening

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-bundle-token"  # noqa: S105 - the test settings' token, a local benchmark
POLLERS = (1, 8, 32)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its children (gunicorn's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _start_gunicorn(port: int, static_root: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.gunicorn_settings",
        "BENCH_STATIC_ROOT": str(static_root),
        # Persistent connections, as the Dockerfile and docker-compose.yml set them: a poll that
        # opened a PostgreSQL connection would cost the connection, not the poll.
        "DB_CONN_MAX_AGE": os.environ.get("DB_CONN_MAX_AGE", "60"),
    }
    command = [sys.executable, "-m", "gunicorn", "egress_portal.wsgi", "-w", "2", "--threads", "8"]
    server = subprocess.Popen(
        [*command, "-b", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return listening(server, port, name="gunicorn", seconds=20)


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body, response.getheader("ETag") or ""


def _run_case(port: int, pid: int, path: str, headers: dict[str, str], pollers: int, seconds: float) -> dict[str, Any]:
    """``pollers`` keep-alive clients asking for ``path`` for ``seconds``; latency and the server's CPU."""
    latencies: list[float] = []
    statuses: set[int] = set()
    lock = threading.Lock()
    start = threading.Barrier(pollers + 1)
    stop = time.perf_counter() + seconds + 1e9  # set for real once everyone is connected

    def poller() -> None:
        nonlocal stop
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        seen: set[int] = set()
        start.wait()
        while time.perf_counter() < stop:
            began = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            seen.add(response.status)
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=poller) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    cpu = _cpu_seconds(pid)
    began = time.perf_counter()
    stop = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    cpu = _cpu_seconds(pid) - cpu
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "rate": len(ordered) / wall,
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "cpu": cpu / max(len(ordered), 1),
        "statuses": sorted(statuses),
    }


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name}: {r['rate']:,.0f}/s, p50 {r['p50'] * 1000:.1f} ms, p95 {r['p95'] * 1000:.1f} ms, "
        f"{r['cpu'] * 1000:.2f} CPU-ms/request ({r['n']:,} requests, status {r['statuses']})"
    )


def bench_bundle_polls(grants: int = 100_000, seconds: float = 10.0) -> None:
    from django.conf import settings
    from django.db import connection

    from bench.run import _reset
    from bench.traffic import _population
    from exceptions.models import BundleArtifact, ServedBundle
    from exceptions.services.publications import publish_bundle

    _reset()
    ServedBundle.objects.all().delete()
    BundleArtifact.objects.all().delete()
    started = time.perf_counter()
    _population(grants, per_request=25, valid_days_ago=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    seeded = time.perf_counter() - started
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        settings.POLICY_REPO_URL, settings.POLICY_WORK_DIR = f"{tmp}/policy.git", Path(tmp) / "work"
        started = time.perf_counter()
        publication = publish_bundle(trigger="bench: bundle polls")
        published = time.perf_counter() - started
        archive = bytes(BundleArtifact.objects.get(revision=publication.revision).archive)
        # The static baseline: a file of the archive's size (incompressible, like the archive),
        # in STATIC_ROOT and served by WhiteNoise as production serves its collected static files.
        static_root = Path(tmp) / "static"
        static_root.mkdir()
        (static_root / "baseline.bin").write_bytes(os.urandom(len(archive)))
        port = _free_port()
        server = _start_gunicorn(port, static_root)
        try:
            auth = {"Authorization": f"Bearer {TOKEN}", "Host": "localhost"}
            status, body, etag = _get(port, "/bundles/egress.tar.gz", auth)
            assert status == 200 and body == archive, status
            status, _, static_etag = _get(port, "/static/baseline.bin", {"Host": "localhost"})
            assert status == 200, status
            cases = {
                "304": (
                    ("/bundles/egress.tar.gz", {**auth, "If-None-Match": etag}),
                    ("/static/baseline.bin", {"Host": "localhost", "If-None-Match": static_etag}),
                ),
                "200": (("/bundles/egress.tar.gz", auth), ("/static/baseline.bin", {"Host": "localhost"})),
            }
            print(
                f"bundle polls: {grants:,} open grants (seeded in {seeded:.1f} s, published in {published:.1f} s), "
                f"archive {len(archive) / 2**20:.2f} MiB; gunicorn -w 2 --threads 8 on PostgreSQL "
                f"(DB_CONN_MAX_AGE={os.environ.get('DB_CONN_MAX_AGE', '60')}); "
                f"{seconds:g} s a case; {_load()}"
            )
            for pollers in POLLERS:
                for kind, ((bundle_path, bundle_headers), (static_path, static_headers)) in cases.items():
                    static = _run_case(port, server.pid, static_path, static_headers, pollers, seconds)
                    bundle = _run_case(port, server.pid, bundle_path, bundle_headers, pollers, seconds)
                    target = "<= 3x" if kind == "304" else "<= 1.2x"
                    print(f"  {pollers:>2} pollers, {kind}: " + _line("bundle", bundle))
                    print(f"  {pollers:>2} pollers, {kind}: " + _line("static", static))
                    print(
                        f"  {pollers:>2} pollers, {kind}: ratio bundle/static: CPU per request "
                        f"{bundle['cpu'] / max(static['cpu'], 1e-9):.2f}x, p50 {bundle['p50'] / static['p50']:.2f}x, "
                        f"p95 {bundle['p95'] / static['p95']:.2f}x, throughput "
                        f"{bundle['rate'] / static['rate']:.2f}x (target: cost {target} the static file's)"
                    )
            print(f"  after the run: {_load()}")
        finally:
            server.terminate()
            server.wait(timeout=30)
            shutil.rmtree(static_root, ignore_errors=True)


def _load() -> str:
    return f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
