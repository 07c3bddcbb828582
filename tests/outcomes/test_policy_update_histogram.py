"""Time to policy update as a Prometheus histogram: real approvals, real publishes into a git
repository, real decision-log ingestion, and /metrics parsed with prometheus_client."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals.services import approve_request
from audit.services import SYSTEM
from bundle.compiler import Bundle
from exceptions.models import BundlePublication
from exceptions.services.artifacts import store_artifact
from exceptions.services.publications import current_bundle, publish_bundle
from outcomes.models import PolicyUpdate
from outcomes.policy_update import observe_engine, observe_pushed
from traffic.models import EgressGateway
from traffic.services.gateways import create_gateway
from traffic.services.ingest import ingest_decisions

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway(team: Any) -> EgressGateway:
    gateway, _ = create_gateway(actor=SYSTEM, name="eu-istio", kind="istio", environment="staging", owner_team=team)
    return gateway


def served(bundle: Bundle) -> str:
    """The bundle endpoint serves a revision before its git push (the publish stores it first):
    an engine can report it before the commit. Its revision, stored as that publish would."""
    store_artifact(bundle=bundle, trigger="test")
    return bundle.revision


def histogram(stage: str) -> dict[str, float]:
    """The stage's samples as /metrics serves them: {"le=<bound>": n, "sum": s, "count": n}."""
    body = Client().get("/metrics").content.decode()
    [family] = [f for f in text_string_to_metric_families(body) if f.name == "egress_policy_update_seconds"]
    assert family.type == "histogram"
    result: dict[str, float] = {}
    for s in family.samples:
        if s.labels["stage"] != stage:
            continue
        key = f"le={s.labels['le']}" if s.name.endswith("_bucket") else s.name.rsplit("_", 1)[1]
        result[key] = s.value
    return result


def approve(submit: Any, approver: Any, host: str, *, ago: timedelta) -> Any:
    [grant] = approve_request(
        actor=approver, request=submit(destinations=[{"host": host, "port": 443}]), now=timezone.now() - ago
    )
    return grant


def decision(decision_id: str, *, at: datetime, revision: str) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "bundles": {"egress": {"revision": revision}},
        "path": "egress/decision",
        "input": {"identity": "spiffe://cluster.local/ns/x/sa/y", "host": "no.example", "port": 443},
        "result": {"allow": False},
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }


def test_each_approval_is_observed_once_per_stage_across_publishes_and_retried_ingestion(
    policy_repo: Path, submit: Any, approver: Any, gateway: EgressGateway
) -> None:
    """Approval A 50 min ago, published; B now, published with A again; C now, published with
    both. A waits 50 min or more, B and C a publish each (seconds): the bounds are minutes apart,
    so a slow machine moves nothing. Only the first approval is backdated: a later one cannot
    precede a publish that already happened."""
    approve(submit, approver, "a.example", ago=timedelta(minutes=50))
    first = publish_bundle(trigger="test")
    assert first.status == BundlePublication.Status.PUBLISHED
    pushed = histogram("pushed")
    assert (pushed["count"], pushed["le=1800.0"], pushed["le=3600.0"], pushed["le=+Inf"]) == (1, 0, 1, 1)
    assert 3000 <= pushed["sum"] < 3300

    # Nothing changed: no commit, nothing observed.
    assert publish_bundle(trigger="test", refresh=True).status == BundlePublication.Status.UNCHANGED
    assert histogram("pushed") == pushed

    approve(submit, approver, "b.example", ago=timedelta(0))
    second = publish_bundle(trigger="test")
    assert second.status == BundlePublication.Status.PUBLISHED and second.revision != first.revision
    pushed = histogram("pushed")
    # The second commit carries A again: only B is new.
    assert (pushed["count"], pushed["le=120.0"], pushed["le=1800.0"], pushed["le=3600.0"]) == (2, 1, 1, 2)
    assert histogram("engine")["count"] == 0

    # A retried delivery of the same publish observes nothing again.
    carried = [record.request_id for record in current_bundle().records.values()]
    assert observe_pushed(revision=second.revision, pushed_at=second.created_at, request_ids=carried) == 0
    assert histogram("pushed") == pushed

    # An engine's first decision with the second bundle ends both waits; the batch is retried,
    # and a late batch brings an earlier decision with the same revision: nothing is recounted.
    seen = timezone.now()
    batch = [decision("d1", at=seen, revision=second.revision)]
    ingest_decisions(gateway=gateway, events=batch)
    engine = histogram("engine")
    assert (engine["count"], engine["le=120.0"], engine["le=1800.0"], engine["le=3600.0"]) == (2, 1, 1, 2)
    ingest_decisions(gateway=gateway, events=batch)
    ingest_decisions(gateway=gateway, events=[decision("d0", at=seen - timedelta(seconds=1), revision=second.revision)])
    assert histogram("engine") == engine
    # The first bundle is reported late (an engine that lagged behind): its approval was seen already.
    ingest_decisions(gateway=gateway, events=[decision("d2", at=seen, revision=first.revision)])
    assert histogram("engine") == engine

    approve(submit, approver, "c.example", ago=timedelta(0))
    third = publish_bundle(trigger="test")
    pushed = histogram("pushed")
    assert (pushed["count"], pushed["le=120.0"], pushed["le=3600.0"]) == (3, 2, 3)
    ingest_decisions(gateway=gateway, events=[decision("d3", at=timezone.now(), revision=third.revision)])
    engine = histogram("engine")
    assert (engine["count"], engine["le=120.0"], engine["le=3600.0"]) == (3, 2, 3)
    assert observe_engine(first_seen={third.revision: timezone.now()}) == 0
    assert PolicyUpdate.objects.filter(engine_at__isnull=True).count() == 0


def test_an_approval_in_progress_when_a_publish_began_is_observed_by_the_next_commit(
    policy_repo: Path, submit: Any, approver: Any
) -> None:
    """B's approval took its time 50 ms before the first publish began but committed after that
    publish had read the grants: the first commit does not carry B, the second does and observes
    it, although B's grant started before the first publish."""
    approve(submit, approver, "a.example", ago=timedelta(0))
    first = publish_bundle(trigger="test")
    assert first.status == BundlePublication.Status.PUBLISHED
    began = first.created_at - timedelta(milliseconds=first.duration_ms)
    request = submit(destinations=[{"host": "b.example", "port": 443}])
    approve_request(actor=approver, request=request, now=began - timedelta(milliseconds=50))
    second = publish_bundle(trigger="test")
    assert second.status == BundlePublication.Status.PUBLISHED
    [b] = PolicyUpdate.objects.filter(request_id=request.pk)
    assert b.pushed_at == second.created_at
    assert histogram("pushed")["count"] == 2


def test_a_database_error_in_the_observation_keeps_the_publish_and_its_audit(
    policy_repo: Path, submit: Any, approver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The histogram's table is gone (dropped inside the test's transaction): the observation
    fails for real, and the publish still records its row and audit event, logging the error."""
    from django.db import connection

    from audit.models import AuditEvent
    from outcomes.models import PolicyUpdateBucket

    approve(submit, approver, "a.example", ago=timedelta(minutes=5))
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "{PolicyUpdateBucket._meta.db_table}"')
    publication = publish_bundle(trigger="test")
    assert publication.status == BundlePublication.Status.PUBLISHED and publication.commit
    [event] = AuditEvent.objects.filter(action="bundle.published")
    assert event.after["commit"] == publication.commit
    # The observation's savepoint is rolled back whole: no approval marked pushed without its count.
    assert not PolicyUpdate.objects.exists()
    assert "hook publication_pushed: outcomes.policy_update.on_publication_pushed failed" in caplog.text
    assert "outcomes_policyupdatebucket" in caplog.text.lower()
    assert publish_bundle(trigger="test").status == BundlePublication.Status.UNCHANGED


def test_an_engine_that_ran_the_bundle_before_its_commit_ends_the_waits_at_the_commit(
    policy_repo: Path, submit: Any, approver: Any, gateway: EgressGateway
) -> None:
    """OPA may poll the portal's bundle endpoint before the publish commits the same bytes. A was
    approved 50 min ago and committed in a bundle no engine reported; B now: the engine's decision
    with the bundle carrying both, before its commit, ends both waits when it is committed."""
    approve(submit, approver, "a.example", ago=timedelta(minutes=50))
    publish_bundle(trigger="test")
    approve(submit, approver, "b.example", ago=timedelta(0))
    revision = served(current_bundle())
    ingest_decisions(gateway=gateway, events=[decision("early", at=timezone.now(), revision=revision)])
    assert histogram("engine")["count"] == 0  # no commit with that revision yet
    # Read every grant afresh: the publisher's per-process records may hold an earlier test's
    # grants under ids SQLite hands out again, and these must be the bytes the engine ran.
    publication = publish_bundle(trigger="test", refresh=True)
    assert publication.revision == revision
    engine = histogram("engine")
    assert (engine["count"], engine["le=120.0"], engine["le=1800.0"], engine["le=3600.0"]) == (2, 1, 1, 2)
    # B's engine wait ended before its commit.
    [b] = PolicyUpdate.objects.filter(pushed_at=publication.created_at)
    assert b.engine_at is not None and b.engine_at < b.pushed_at


def test_a_revision_seen_before_an_approval_does_not_end_its_wait(
    policy_repo: Path, submit: Any, approver: Any, gateway: EgressGateway
) -> None:
    """A decision older than the approval was made with an identical older bundle, not with it."""
    grant = approve(submit, approver, "a.example", ago=timedelta(minutes=10))
    revision = current_bundle().revision  # what the publish will store and serve
    ingest_decisions(
        gateway=gateway, events=[decision("old", at=grant.valid_from - timedelta(minutes=1), revision=revision)]
    )
    publish_bundle(trigger="test")
    assert (histogram("pushed")["count"], histogram("engine")["count"]) == (1, 0)


def test_a_decision_before_an_approval_reported_after_its_publish_does_not_end_its_wait(
    policy_repo: Path, submit: Any, approver: Any, gateway: EgressGateway
) -> None:
    """The same, when the engine's report arrives after the publish: a decision stamped a minute
    before the approval (an engine's clock behind the portal's, or an identical older bundle)
    says nothing about the approval."""
    grant = approve(submit, approver, "a.example", ago=timedelta(minutes=10))
    publication = publish_bundle(trigger="test")
    early = decision("early", at=grant.valid_from - timedelta(minutes=1), revision=publication.revision)
    ingest_decisions(gateway=gateway, events=[early])
    assert (histogram("pushed")["count"], histogram("engine")["count"]) == (1, 0)
    assert PolicyUpdate.objects.get().engine_at is None


def test_an_engine_report_ends_more_waits_than_one_statement_may_bind(
    policy_repo: Path, submit: Any, approver: Any, gateway: EgressGateway
) -> None:
    """1,200 approvals wait for an engine; SQLite before 3.32 binds at most 999 values in a
    statement (the limit Django assumes for SQLite), set here on the real connection: the first
    report ends every wait."""
    import copy
    import sqlite3

    from django.db import connection

    from exceptions.models import ExceptionRequest

    approve(submit, approver, "a.example", ago=timedelta(minutes=10))
    publication = publish_bundle(trigger="test")
    [first] = PolicyUpdate.objects.all()
    template = ExceptionRequest.objects.get(pk=first.request_id)
    clones = []
    for _ in range(1199):
        clone = copy.copy(template)
        clone.pk = None
        clones.append(clone)
    ExceptionRequest.objects.bulk_create(clones, batch_size=50)
    PolicyUpdate.objects.bulk_create(
        PolicyUpdate(request=clone, decided_at=first.decided_at, pushed_at=first.pushed_at) for clone in clones
    )
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        raw = connection.connection
        limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, connection.features.max_query_params)
    try:
        ingest_decisions(gateway=gateway, events=[decision("d", at=timezone.now(), revision=publication.revision)])
    finally:
        if connection.vendor == "sqlite":
            raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    assert histogram("engine")["count"] == 1200
    assert not PolicyUpdate.objects.filter(engine_at__isnull=True).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_reports_count_each_approval_once(policy_repo: Path, submit: Any, approver: Any) -> None:
    """Three gateways report at once: the first bundle, and the second one twice. The second
    carries both approvals, the first only A: whatever the interleaving, A and B count once."""
    import threading

    from django.db import connection

    approve(submit, approver, "a.example", ago=timedelta(seconds=400))
    first = publish_bundle(trigger="test")
    approve(submit, approver, "b.example", ago=timedelta(0))
    second = publish_bundle(trigger="test")
    gateways = [create_gateway(actor=SYSTEM, name=f"gw-{n}", kind="istio", environment="staging")[0] for n in range(3)]
    seen = timezone.now()
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def upload(n: int, revision: str) -> None:
        try:
            barrier.wait(timeout=30)
            event = decision(f"c-{n}", at=seen, revision=revision)
            event["input"] = {**event["input"], "identity": f"spiffe://cluster.local/ns/x/sa/y{n}"}
            ingest_decisions(gateway=gateways[n], events=[event])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=upload, args=(n, revision))
        for n, revision in enumerate((first.revision, second.revision, second.revision))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = histogram("engine")
    # A waited 400 s and more, B a publish (seconds).
    assert (engine["count"], engine["le=300.0"], engine["le=600.0"]) == (2, 1, 2)


def _someone_waits_for_an_advisory_lock() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return bool(cursor.fetchone()[0])


def _commit_when_waited_for(done: Any) -> None:
    """Hold the open transaction until another transaction waits for an advisory lock (the fix),
    or the other side has finished without waiting (the race lost), at most 30 s."""
    import time

    deadline = time.monotonic() + 30
    while not done.is_set() and not _someone_waits_for_an_advisory_lock() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["ingestion", "publish"])
def test_a_publish_and_the_first_report_of_its_revision_at_once_observe_the_engine_stage(
    policy_repo: Path, submit: Any, approver: Any, first: str
) -> None:
    """The publish that commits a revision and the ingestion of an engine's first decision with
    it, in overlapping transactions (either one first): the engine stage is observed once."""
    import threading

    from django.db import connection, transaction

    gateway, _ = create_gateway(actor=SYSTEM, name="gw", kind="istio", environment="staging")
    request = submit(destinations=[{"host": "b.example", "port": 443}])
    approve_request(actor=approver, request=request, now=timezone.now() - timedelta(seconds=5))
    revision = served(current_bundle())
    started, finished = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    publications: list[BundlePublication] = []

    def ingest() -> None:
        ingest_decisions(gateway=gateway, events=[decision("x", at=timezone.now(), revision=revision)])

    def publish() -> None:
        publications.append(publish_bundle(trigger="test", refresh=True))

    opening, other = (ingest, publish) if first == "ingestion" else (publish, ingest)

    def hold_open() -> None:
        try:
            with transaction.atomic():
                opening()
                started.set()
                _commit_when_waited_for(finished)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            started.set()
            connection.close()

    thread = threading.Thread(target=hold_open)
    thread.start()
    assert started.wait(60)
    other()
    finished.set()
    thread.join(60)
    assert errors == []
    assert [p.revision for p in publications] == [revision]
    [row] = PolicyUpdate.objects.filter(request_id=request.pk)
    assert row.engine_at is not None, "the engine stage was never observed"
    assert histogram("engine")["count"] == 1


def test_the_observations_need_no_returning_on_sqlite(
    policy_repo: Path, submit: Any, approver: Any, gateway: EgressGateway
) -> None:
    """Django 5.2 supports SQLite from 3.31; RETURNING came in 3.35. On SQLite (one writer at a
    time) the observations look, then insert: each stage is still observed once."""
    from django.db import connection

    statements: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    approve(submit, approver, "a.example", ago=timedelta(minutes=5))
    with connection.execute_wrapper(record):
        publication = publish_bundle(trigger="test")
        carried = [record.request_id for record in current_bundle().records.values()]
        assert observe_pushed(revision=publication.revision, pushed_at=publication.created_at, request_ids=carried) == 0
        for n in range(2):  # the second report of the revision is not a first one
            ingest_decisions(
                gateway=gateway, events=[decision(f"d{n}", at=timezone.now(), revision=publication.revision)]
            )
    assert (histogram("pushed")["count"], histogram("engine")["count"]) == (1, 1)
    assert any("bundlerevisionseen" in sql for sql in statements)
    if connection.vendor == "sqlite":
        returning = [
            sql
            for sql in statements
            if "RETURNING" in sql.upper() and ("policyupdate" in sql or "bundlerevisionseen" in sql)
        ]
        assert returning == []
