"""Benchmarks of issue 10: the integration API.

    .venv/bin/python bench/run.py api [--grants 100000]   # the list's size

1. Create throughput and p95: POST /api/v1/requests/ with an integration token and an
   Idempotency-Key, against gunicorn as the Dockerfile runs it (threads 8; 2 workers for
   2 cores) on PostgreSQL, from a bounded load generator on loopback (``CREATES`` calls
   over ``CONCURRENCY`` keep-alive connections), and the queries one create makes.
   Target (issue 18): >= 100 creates/s, p95 <= 200 ms with 8 clients on a 2-core machine.
2. The request list with 100,000 requests: the query count of one page is the same
   for every page size and position (cursor), and p95 of a page of 50 <= 300 ms.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.servers import listening

ROOT = Path(__file__).resolve().parent.parent
CREATES = int(os.environ.get("BENCH_API_CREATES", "600"))
CONCURRENCY = int(os.environ.get("BENCH_API_CONCURRENCY", "8"))


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def _world() -> tuple[Any, Any, str]:
    """A team, its member, a workload and a token for the member; returns (user, workload, key)."""
    from django.contrib.auth import get_user_model

    from bench.run import _reset
    from exceptions.models import IdempotencyRecord, IntegrationToken, Team, TeamMembership, Workload
    from exceptions.tokens import SCOPES, create_token

    _reset()
    IdempotencyRecord.objects.all().delete()
    IntegrationToken.objects.all().delete()
    user, _ = get_user_model().objects.get_or_create(username="bench-api", defaults={"email": "bench-api@example.org"})
    team = Team.objects.create(name="Bench API", slug="bench-api")
    TeamMembership.objects.create(team=team, user=user)
    workload = Workload.objects.create(
        team=team,
        name="bench-api",
        namespace="bench",
        service_account="bench-api",
        identity="spiffe://bench/ns/bench/sa/bench-api",
        identity_kind="kubernetes",
        environment="dev",
    )
    _, key = create_token(actor=user, user=user, name="bench", scopes=list(SCOPES))
    return user, workload, key


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_gunicorn(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "egress_portal.settings.test"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "egress_portal.wsgi",
            "-w",
            "2",
            "--threads",
            "8",
            "-b",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return listening(server, port, name="gunicorn", seconds=10)


def bench_create(workload: Any, key: str) -> None:
    port = _free_port()
    server = _start_gunicorn(port)
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    per_worker = CREATES // CONCURRENCY

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n in range(per_worker):
            body = json.dumps(
                {
                    "workload": workload.pk,
                    "destinations": [{"host": f"h{index}-{n}.partner.example", "port": 443}],
                    "purpose": "partner_api",
                    "data_class": "internal",
                    "justification": "Benchmark request filed by the load generator on loopback.",
                    "ticket_ref": f"BENCH-{index}-{n}",
                    "lifetime_hours": 24,
                }
            )
            headers = {
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"bench-{index}-{n}",
            }
            started = time.perf_counter()
            connection.request("POST", "/api/v1/requests/", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status != 201:
                    failures.append(response.status)
        connection.close()

    try:
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        warm.request("GET", "/api/v1/workloads/", headers={"Authorization": f"Bearer {key}"})
        warm.getresponse().read()
        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    done = len(latencies)
    print(
        f"api create: {done} POST /api/v1/requests/ over {CONCURRENCY} connections, gunicorn -w 2 --threads 8: "
        f"{done / wall:.0f} creates/s (target >= 100/s), p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {_p95(latencies) * 1000:.0f} ms (target <= 200 ms), non-201: {len(failures)}; {_load()}"
    )


def _load() -> str:
    """The machine's load: on a shared 2-core machine, wall-clock figures move with it."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def bench_create_queries(workload: Any, key: str) -> None:
    """Queries of one create (in process, warm): the test pins an upper bound on this figure."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    counts = []
    for n in range(3):
        body = {
            "workload": workload.pk,
            "destinations": [{"host": f"q{n}-{i}.partner.example", "port": 443} for i in range(1 + 4 * n)],
            "purpose": "partner_api",
            "data_class": "internal",
            "justification": "Benchmark request counting the queries of one create.",
            "ticket_ref": f"QUERIES-{n}",
            "lifetime_hours": 24,
        }
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                "/api/v1/requests/",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
                HTTP_IDEMPOTENCY_KEY=f"queries-{n}",
            )
        assert response.status_code == 201, response.content[:300]
        counts.append(len(queries))
    print(
        f"api create: queries per create {counts[1:]} for 5 and 9 destinations "
        "(first call warms the process; constant when equal)"
    )


def _populate(user: Any, workload: Any, count: int) -> float:
    from django.db import connection

    from exceptions.models import ExceptionRequest, RequestDestination

    started = time.perf_counter()
    batch = 10_000
    for start in range(0, count, batch):
        rows = ExceptionRequest.objects.bulk_create(
            ExceptionRequest(
                workload=workload,
                requester=user,
                purpose="partner_api",
                data_class="internal",
                justification="Benchmark row for the list endpoint.",
                ticket_ref=f"LIST-{start + i}",
                lifetime=timedelta(hours=24),
                status="pending" if (start + i) % 3 else "rejected",
                risk_tier="low",
                risk_reasons=[],
            )
            for i in range(min(batch, count - start))
        )
        RequestDestination.objects.bulk_create(
            RequestDestination(request=r, host=f"h{r.pk}.partner.example", port=443) for r in rows
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE exceptions_exceptionrequest")
    return time.perf_counter() - started


def bench_list(user: Any, workload: Any, count: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    print(f"api list: {count} requests inserted in {_populate(user, workload, count):.1f} s")
    client = APIClient(HTTP_HOST="127.0.0.1")  # outside pytest, "testserver" is not an allowed host
    client.force_authenticate(user)
    client.get("/api/v1/requests/?limit=10")  # warm: the policy and calendar load once per process
    counts: dict[str, int] = {}
    for label, path in [
        ("limit=10", "/api/v1/requests/?limit=10"),
        ("limit=50", "/api/v1/requests/?limit=50"),
        ("limit=200", "/api/v1/requests/?limit=200"),
        ("status=pending&limit=50", "/api/v1/requests/?status=pending&limit=50"),
    ]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        assert response.status_code == 200, response.content[:300]
        counts[label] = len(queries)
    # Deep in the list: follow cursors 20 pages in.
    url: str | None = "/api/v1/requests/?limit=50&ordering=updated_at"
    for _ in range(20):
        assert url is not None
        url = client.get(url).json()["next"]
    assert url is not None
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    counts["page 21 (cursor)"] = len(queries)
    timings: list[float] = []
    for _ in range(40):
        started = time.perf_counter()
        client.get("/api/v1/requests/?limit=50")
        timings.append(time.perf_counter() - started)
    print(f"api list: queries per page {counts} (constant when all equal)")
    print(
        f"api list: {count} requests, page of 50: p50 {statistics.median(timings) * 1000:.0f} ms, "
        f"p95 {_p95(timings) * 1000:.0f} ms (in-process client; target p95 <= 300 ms)"
    )


def bench_api_create() -> None:
    _, workload, key = _world()
    bench_create_queries(workload, key)
    bench_create(workload, key)


def bench_api(requests: int) -> None:
    user, workload, key = _world()
    bench_create_queries(workload, key)
    bench_create(workload, key)
    bench_list(user, workload, requests)
