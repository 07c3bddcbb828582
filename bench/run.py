"""Benchmarks with their targets. They print figures; they never fail a build.

    make bench                     # all benchmarks
    .venv/bin/python bench/run.py expire --grants 100000

They run on PostgreSQL (database ``egress_bench``, created if missing) unless
BENCH_DATABASE_URL names another.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/egress_bench")


def _setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "egress_portal.settings.test"
    os.environ["DATABASE_URL"] = BENCH_DB
    if BENCH_DB.startswith("postgres"):
        import psycopg

        admin_url = BENCH_DB.rsplit("/", 1)[0] + "/postgres"
        name = BENCH_DB.rsplit("/", 1)[1]
        with psycopg.connect(admin_url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _reset() -> None:
    from django.db import connection

    tables = [
        "audit_auditevent",
        "audit_auditchainhead",
        "exceptions_grant",
        "exceptions_requestdestination",
        "exceptions_exceptionrequest",
        "exceptions_workload",
        "exceptions_teammembership",
        "exceptions_team",
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names


def bench_expire(grants: int) -> None:
    """Target: expire_due_grants over 100,000 due grants in ≤ 10 s on PostgreSQL."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from audit.verification import verify_chain
    from exceptions.models import ExceptionRequest, Grant, Team, Workload
    from exceptions.services import expire_due_grants

    _reset()
    now = timezone.now()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    team = Team.objects.create(name="Bench", slug="bench")
    per_request = 100
    requests = max(1, grants // per_request)
    workloads = Workload.objects.bulk_create(
        Workload(
            team=team,
            name=f"w{i}",
            identity=f"spiffe://bench/ns/b/sa/w{i}",
            identity_kind="kubernetes",
            environment="dev",
        )
        for i in range(requests)
    )
    exception_requests = ExceptionRequest.objects.bulk_create(
        ExceptionRequest(
            workload=w,
            requester=user,
            purpose="telemetry",
            data_class="internal",
            justification="bench",
            lifetime=timedelta(days=1),
            status="active",
            risk_tier="low",
        )
        for w in workloads
    )
    Grant.objects.bulk_create(
        (
            Grant(
                request=r,
                workload=r.workload,
                identity=r.workload.identity,
                host=f"h{j}.bench.example",
                port=443,
                valid_from=now - timedelta(days=2),
                expires_at=now - timedelta(seconds=1),
                status="active",
            )
            for r in exception_requests
            for j in range(per_request)
        ),
        batch_size=5000,
    )
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Production tables have planner statistics (autovacuum); a fresh bulk load has none.
            cursor.execute("ANALYZE")
    started = time.perf_counter()
    expired = expire_due_grants(now=now)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    verified = verify_chain()
    verify_elapsed = time.perf_counter() - started
    print(
        f"expire_due_grants: {expired:,} grants + {requests:,} requests expired in {elapsed:.2f} s "
        f"({expired / elapsed:,.0f} grants/s; target 100,000 in <= 10 s)"
    )
    print(f"verify_audit: {verified.checked:,} events verified in {verify_elapsed:.2f} s (ok={verified.ok})")
    again = time.perf_counter()
    assert expire_due_grants(now=now) == 0
    print(f"expire_due_grants second run (nothing due): {time.perf_counter() - again:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["all", "expire"])
    parser.add_argument("--grants", type=int, default=100_000)
    args = parser.parse_args()
    _setup_django()
    print(f"database: {BENCH_DB}")
    if args.which in {"all", "expire"}:
        bench_expire(args.grants)


if __name__ == "__main__":
    main()
