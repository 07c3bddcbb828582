"""Benchmarks of issue 7: ingestion, the outbox relay, the stale sweep, expiry with the outbox.

    .venv/bin/python bench/run.py traffic [--grants 100000]

Targets (one process, PostgreSQL): ingestion >= 50,000 decision events/s aggregated;
outbox drain >= 1,000 deliveries/s with a no-op handler; stale sweep over 100,000
grants with usage <= 10 s; expire 100,000 due grants <= 10 s with the outbox in the path.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from datetime import timedelta
from typing import Any


def _truncate(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names


TRAFFIC_TABLES = (
    "traffic_seenrecord",
    "traffic_grantusage",
    "traffic_deniedtraffic",
    "traffic_identityfeed",
    "traffic_observedflow",
    "traffic_ingestbatch",
    "traffic_stalenotice",
    "traffic_egressgateway",
    "outbox_outboxmessage",
)


def _population(grants: int, *, per_request: int, valid_days_ago: int) -> list[Any]:
    """Active grants, ``per_request`` per workload identity; returns the grants with ids."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from exceptions.models import ExceptionRequest, Grant, Team, Workload

    now = timezone.now()
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"email": "bench@example.org"})
    team = Team.objects.create(name="Bench", slug="bench")
    requests = max(1, grants // per_request)
    workloads = Workload.objects.bulk_create(
        Workload(team=team, name=f"w{i}", identity=f"spiffe://bench/ns/b/sa/w{i}", identity_kind="kubernetes",
                 environment="dev")
        for i in range(requests)
    )  # fmt: skip
    exception_requests = ExceptionRequest.objects.bulk_create(
        ExceptionRequest(workload=w, requester=user, purpose="telemetry", data_class="internal", justification="bench",
                         lifetime=timedelta(days=90), status="active", risk_tier="low")
        for w in workloads
    )  # fmt: skip
    return Grant.objects.bulk_create(
        (
            Grant(request=r, workload=r.workload, identity=r.workload.identity, host=f"h{j}.bench.example", port=443,
                  valid_from=now - timedelta(days=valid_days_ago), expires_at=now + timedelta(days=30), status="active")
            for r in exception_requests
            for j in range(per_request)
        ),
        batch_size=5000,
    )  # fmt: skip


def _load() -> str:
    """The machine's load: on a shared 2-core machine, wall-clock figures move with it."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _analyze() -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # a fresh bulk load has no planner statistics


def bench_ingest(events: int = 200_000, chunk: int = 5_000) -> None:
    """Target: >= 50,000 decision events/s, from gzip bodies to aggregated rows."""
    from django.utils import timezone

    from audit.services import SYSTEM
    from bench.run import _reset
    from exceptions.models import BundlePublication
    from traffic.api import parse_opa
    from traffic.models import GrantUsage
    from traffic.services.gateways import create_gateway
    from traffic.services.ingest import ingest_decisions

    _reset()
    _truncate(*TRAFFIC_TABLES)
    grants = _population(10_000, per_request=10, valid_days_ago=1)
    gateway, _ = create_gateway(actor=SYSTEM, name="bench-gw", kind="istio", environment="dev")
    # The revision the events name, as a publish records it (others are refused, issue 17).
    BundlePublication.objects.get_or_create(revision="r1", defaults={"status": "published", "trigger": "bench"})
    _analyze()
    now = timezone.now()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    # Each upload comes from a gateway in front of 50 workloads (500 of the 10,000 grants),
    # the way a node's or a namespace's egress gateway sees traffic: ~10 events per grant.
    bodies = []
    for start in range(0, events, chunk):
        batch = []
        served = grants[(start // chunk) * 500 % len(grants) :][:500]
        for n in range(start, min(start + chunk, events)):
            grant = served[n % len(served)]
            allowed = n % 10 != 0
            batch.append({
                "labels": {"app": "bench", "id": "gw-1", "version": "1.4.0"},
                "decision_id": f"bench-{n}",
                "bundles": {"egress": {"revision": "r1"}},
                "path": "egress/decision",
                "input": {"identity": grant.identity, "host": grant.host if allowed else f"denied{n % 50}.example",
                          "port": 443, "protocol": "tcp"},
                "result": {"allow": allowed, "grant_id": grant.pk if allowed and n % 2 else None},
                "timestamp": stamp,
            })  # fmt: skip
        bodies.append(gzip.compress(json.dumps(batch).encode()))
    # The endpoint's own path: gunzip, parse (orjson), parse each event, aggregate, upsert.
    started, cpu = time.perf_counter(), time.process_time()
    accepted = 0
    for body in bodies:
        accepted += ingest_decisions(gateway=gateway, events=parse_opa(gzip.decompress(body)), now=now).accepted
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"ingest: {accepted:,} OPA decision events ({len(bodies)} gzip uploads of {chunk:,}) in {elapsed:.2f} s = "
        f"{accepted / elapsed:,.0f} events/s wall, {accepted / cpu:,.0f} per CPU-second of this process "
        f"(target >= 50,000/s); {GrantUsage.objects.count():,} usage rows; {_load()}"
    )
    started = time.perf_counter()
    duplicates = sum(
        ingest_decisions(gateway=gateway, events=parse_opa(gzip.decompress(b)), now=now).duplicates for b in bodies
    )
    elapsed = time.perf_counter() - started
    print(f"ingest retried: {duplicates:,} duplicates recognised in {elapsed:.2f} s = {duplicates / elapsed:,.0f}/s")


def bench_outbox_drain(rows: int = 20_000) -> None:
    """Target: >= 1,000 deliveries/s with a no-op handler."""
    from django.conf import settings
    from django.utils import timezone

    from foundation.outbox.models import OutboxMessage
    from foundation.outbox.relay import relay_due

    _truncate("outbox_outboxmessage")
    now = timezone.now()
    OutboxMessage.objects.bulk_create(
        (OutboxMessage(kind="noop", payload={"n": n}, idempotency_key=f"noop-{n}", available_at=now)
         for n in range(rows)),
        batch_size=5000,
    )  # fmt: skip
    _analyze()
    for batch_size in (settings.OUTBOX_BATCH_SIZE, 500):
        OutboxMessage.objects.update(status="pending", attempts=0, available_at=now, delivered_at=None)
        started = time.perf_counter()
        result = relay_due(batch_size=batch_size, max_seconds=600)
        elapsed = time.perf_counter() - started
        print(
            f"outbox drain: {result.delivered:,} no-op deliveries in {elapsed:.2f} s = "
            f"{result.delivered / elapsed:,.0f}/s with batches of {batch_size} (target >= 1,000/s); {_load()}"
        )


def bench_stale_sweep(grants: int) -> None:
    """Target: the stale sweep over 100,000 grants with usage <= 10 s."""
    from django.utils import timezone

    from audit.services import SYSTEM
    from bench.run import _reset
    from traffic.models import GrantUsage, IdentityFeed, StaleNotice
    from traffic.services.gateways import create_gateway
    from traffic.services.stale import sweep_stale_grants

    _reset()
    _truncate(*TRAFFIC_TABLES)
    population = _population(grants, per_request=100, valid_days_ago=60)
    now = timezone.now()
    gateway, _ = create_gateway(actor=SYSTEM, name="bench-gw", kind="istio", environment="dev")
    IdentityFeed.objects.bulk_create(
        IdentityFeed(identity=i, gateway=gateway, first_seen=now - timedelta(days=90), last_seen=now)
        for i in {g.identity for g in population}
    )
    # 99% used within the window (a row a day for the last 3 days), 1% unused: those get notices.
    GrantUsage.objects.bulk_create(
        (GrantUsage(grant=g, day=(now - timedelta(days=d)).date(), count=10, last_seen=now - timedelta(days=d))
         for g in population if g.pk % 100 for d in range(3)),
        batch_size=10_000,
    )  # fmt: skip
    _analyze()
    started = time.perf_counter()
    result = sweep_stale_grants(now=now)
    elapsed = time.perf_counter() - started
    print(
        f"stale sweep: {grants:,} grants with usage swept in {elapsed:.2f} s "
        f"({result.noticed:,} noticed; target <= 10 s)"
    )
    started = time.perf_counter()
    result = sweep_stale_grants(now=now + timedelta(days=8))
    elapsed = time.perf_counter() - started
    print(
        f"stale sweep after the grace: {result.revoked:,} revoked in {elapsed:.2f} s; "
        f"{StaleNotice.objects.count():,} notices"
    )


def bench_expire_with_outbox(grants: int) -> None:
    """Target: expire 100,000 due grants <= 10 s with the outbox (a coalesced publish row) in the path."""
    from django.conf import settings

    from bench.run import bench_expire
    from foundation.outbox.models import OutboxMessage

    _truncate("outbox_outboxmessage")
    settings.EGRESS_AUTO_PUBLISH, settings.OUTBOX_NUDGE = True, False
    try:
        bench_expire(grants)
    finally:
        settings.EGRESS_AUTO_PUBLISH = False
    rows = list(OutboxMessage.objects.filter(kind="bundle.publish").values_list("revision", flat=True))
    print(f"  outbox after the expiry: {len(rows)} bundle.publish row(s), re-armed {rows[0] if rows else 0} times")


def run(grants: int) -> None:
    bench_outbox_drain()
    bench_ingest()
    bench_stale_sweep(grants)
    bench_expire_with_outbox(grants)
