"""Observed traffic: OPA decision logs posted unchanged, flow records, aggregation and idempotency."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.services import approve_request
from exceptions.models import BundlePublication
from traffic.models import DeniedTraffic, GrantUsage, IdentityFeed, IngestBatch

pytestmark = pytest.mark.django_db

IDENTITY = "spiffe://cluster.local/ns/payments/sa/checkout-api"


def opa_event(decision_id: str, *, host: str, port: int, allow: bool, at: Any, grant_id: int | None = None) -> dict:
    """A decision-log event as OPA's decision-log plugin uploads it."""
    return {
        "labels": {"app": "egress-gateway", "id": "1780d507-aea2-45cc-ae50-fa153c8e4a5a", "version": "1.4.0"},
        "decision_id": decision_id,
        "bundles": {"egress": {"revision": "abc123"}},
        "path": "egress/decision",
        "input": {"identity": IDENTITY, "host": host, "port": port, "protocol": "tcp"},
        "result": {"allow": allow, "reason": "…", "grant_id": grant_id, "expires_at": None},
        "requested_by": "10.0.0.7:53211",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",  # OPA writes nanoseconds
        "metrics": {"timer_rego_query_eval_ns": 21000},
    }


def post_opa(client: Client, token: str, events: list[Any]) -> Any:
    return client.post(
        "/api/v1/ingest/opa/logs",
        data=gzip.compress(json.dumps(events).encode()),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture(autouse=True)
def published_revision(db: Any) -> None:
    """The revision the events below name, as the portal's publisher records it."""
    BundlePublication.objects.create(status=BundlePublication.Status.PUBLISHED, revision="abc123", trigger="test")


@pytest.fixture
def grant(submit: Any, approver: Any) -> Any:
    [grant] = approve_request(
        actor=approver, request=submit(), now=timezone.now() - timedelta(days=1)
    )  # api.partner.example:443
    return grant


def test_opa_decision_logs_are_aggregated_per_grant_and_day_and_a_retry_counts_once(
    client: Client, gateway_and_token: Any, grant: Any
) -> None:
    gateway, token = gateway_and_token
    now = timezone.now()
    events = [opa_event(f"d-{i}", host="api.partner.example", port=443, allow=True, at=now, grant_id=grant.pk)
              for i in range(5)]  # fmt: skip
    events += [opa_event(f"x-{i}", host="evil.example", port=443, allow=False, at=now) for i in range(3)]
    events.append({**opa_event("other", host="a.example", port=1, allow=True, at=now), "path": "system/main"})
    response = post_opa(client, token, events)
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 8, "duplicates": 0, "ignored": 1, "out_of_scope": 0, "unknown_revision": 0, "rejected": [],
        "rejected_count": 0,
    }  # fmt: skip
    usage = GrantUsage.objects.get()
    assert (usage.grant_id, usage.count, usage.day) == (grant.pk, 5, now.date())
    denied = DeniedTraffic.objects.get()
    assert (denied.identity, denied.host, denied.port, denied.count) == (IDENTITY, "evil.example", 443, 3)

    again = post_opa(client, token, events)  # OPA retries the same upload
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 8
    assert GrantUsage.objects.get().count == 5 and DeniedTraffic.objects.get().count == 3
    gateway.refresh_from_db()
    assert gateway.last_record_at is not None
    assert IdentityFeed.objects.get().identity == IDENTITY
    assert IngestBatch.objects.count() == 2


def test_malformed_events_are_rejected_one_by_one_and_the_rest_kept(
    client: Client, gateway_and_token: Any, grant: Any
) -> None:
    _, token = gateway_and_token
    now = timezone.now()
    good = opa_event("ok", host="api.partner.example", port=443, allow=True, at=now)
    no_id = {**good, "decision_id": ""}
    bad_port = {**good, "decision_id": "p", "input": {**good["input"], "port": 70000}}
    bad_time = {**good, "decision_id": "t", "timestamp": "yesterday"}
    no_input = {**good, "decision_id": "i", "input": None}
    unmatched = opa_event("u", host="api.partner.example", port=8443, allow=True, at=now)
    response = post_opa(client, token, [good, no_id, bad_port, "not an object", bad_time, no_input, unmatched])
    body = response.json()
    assert response.status_code == 200 and body["accepted"] == 1 and body["rejected_count"] == 6
    reasons = {r.get("index"): r["reason"] for r in body["rejected"]}
    assert "decision_id is missing" in reasons[1]
    assert "port must be a number from 1 to 65535, not 70000" in reasons[2]
    assert "not a JSON object" in reasons[3]
    assert "not an RFC 3339 time" in reasons[4]
    assert "input is missing" in reasons[5]
    assert any("matches no grant" in r["reason"] for r in body["rejected"])
    assert GrantUsage.objects.get().count == 1  # derived from the grant match, without a grant_id


def test_ingest_refuses_unknown_tokens_and_unreadable_bodies(client: Client, gateway_and_token: Any) -> None:
    _, token = gateway_and_token
    assert post_opa(client, "egw_nope_nope", []).status_code == 401
    not_gzip = client.post(
        "/api/v1/ingest/opa/logs", data=b"\x1f\x8bgarbage", content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert not_gzip.status_code == 400 and "gzip" in not_gzip.json()["detail"]
    not_array = post_opa(client, token, {"decision_id": "x"})
    assert not_array.status_code == 400 and "JSON array" in not_array.json()["detail"]
    assert not IngestBatch.objects.exists()


def test_flow_records_as_json_lines_match_wildcard_grants_and_reject_bad_lines(
    client: Client, gateway_and_token: Any, submit: Any, approver: Any
) -> None:
    _, token = gateway_and_token
    [grant] = approve_request(
        actor=approver,
        request=submit(destinations=[{"host": "*.s3.example.com", "port": 443}]),
        now=timezone.now() - timedelta(hours=1),
    )
    now = timezone.now().isoformat()
    lines = [
        json.dumps({"identity": IDENTITY, "host": "bucket.s3.example.com", "port": 443, "protocol": "tcp",
                    "verdict": "allow", "time": now, "bytes": 1200}),
        "{not json",
        json.dumps({"identity": IDENTITY, "host": "db.example", "port": 5432, "verdict": "deny", "time": now}),
        json.dumps({"identity": IDENTITY, "host": "db.example", "port": 5432, "verdict": "maybe", "time": now}),
    ]  # fmt: skip
    response = client.post(
        "/api/v1/ingest/flows", data="\n".join(lines), content_type="application/x-ndjson",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    body = response.json()
    assert body["accepted"] == 2 and body["rejected_count"] == 2
    assert "line 2 is not JSON" in body["rejected"][0]["reason"]
    assert "verdict must be 'allow' or 'deny'" in body["rejected"][1]["reason"]
    usage = GrantUsage.objects.get()
    assert usage.grant_id == grant.pk and usage.bytes == 1200
    assert DeniedTraffic.objects.get().host == "db.example"


def test_last_seen_shows_on_the_grant_api_and_pages_and_denied_destinations_on_the_workload(
    client: Client, gateway: Any, grant: Any, requester: Any, workload: Any
) -> None:
    from tests.traffic.conftest import flow, report

    now = timezone.now()
    report(
        gateway,
        flow(IDENTITY, "api.partner.example", 443, "allow", now),
        *[flow(IDENTITY, "pastebin.example", 443, "deny", now - timedelta(seconds=i)) for i in range(4)],
        flow(IDENTITY, "db.example", 5432, "deny", now),
        now=now,
    )
    client.force_login(requester)
    api = client.get(f"/api/v1/grants/{grant.pk}/").json()
    assert api["last_seen"] is not None and api["last_seen"].startswith(now.strftime("%Y-%m-%dT%H:%M"))
    assert "Last seen: never" not in client.get(f"/grants/{grant.pk}/").content.decode()
    assert "Traffic last seen: #" in client.get(f"/requests/{grant.request_id}/").content.decode()
    page = client.get(f"/workloads/{workload.pk}/traffic/").content.decode()
    assert page.index("pastebin.example") < page.index("db.example")  # most denied first
    assert f"?workload={workload.pk}&amp;host=pastebin.example&amp;port=443" in page


def test_workload_traffic_is_hidden_from_other_teams(client: Client, outsider: Any, workload: Any) -> None:
    client.force_login(outsider)
    assert client.get(f"/workloads/{workload.pk}/traffic/").status_code == 404


def test_digests_are_forgotten_once_their_records_could_no_longer_be_accepted(
    gateway: Any, grant: Any, settings: Any
) -> None:
    from tests.traffic.conftest import flow, report
    from traffic.models import ObservedFlow, SeenRecord
    from traffic.services.ingest import prune_seen_records

    now = timezone.now()
    report(gateway, flow(IDENTITY, "api.partner.example", 443, "allow", now), now=now)
    assert prune_seen_records(now=now + timedelta(days=settings.EGRESS_INGEST_DEDUP_DAYS)) == 0
    # The record's digest and its day's distinct flow.
    assert prune_seen_records(now=now + timedelta(days=settings.EGRESS_INGEST_DEDUP_DAYS + 2)) == 2
    assert not SeenRecord.objects.exists() and not ObservedFlow.objects.exists()


def test_grant_list_api_reads_last_seen_for_the_page_in_one_query(
    client: Client, gateway: Any, submit: Any, approver: Any, requester: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.traffic.conftest import flow, report

    client.force_login(requester)
    now = timezone.now()

    def add_used_grant(host: str) -> None:
        approve_request(
            actor=approver,
            request=submit(destinations=[{"host": host, "port": 443}]),
            now=now - timedelta(hours=1),
        )
        report(gateway, flow(IDENTITY, host, 443, "allow", now), now=now)

    def list_queries() -> tuple[int, list[Any]]:
        with CaptureQueriesContext(connection) as queries:
            results = client.get("/api/v1/grants/").json()["results"]
        return len(queries), results

    add_used_grant("one.example")
    one, _ = list_queries()
    add_used_grant("two.example")
    add_used_grant("three.example")
    three, results = list_queries()
    assert three == one
    assert len(results) == 3 and all(r["last_seen"] for r in results)


@pytest.mark.opa
def test_decisions_of_the_real_opa_engine_on_the_published_bundle_are_ingested(
    client: Client, gateway_and_token: Any, grant: Any
) -> None:
    """The events carry what the real engine answers for the portal's bundle, in OPA's log format."""
    import uuid

    from exceptions.services.publications import current_bundle
    from tests.bundle.test_opa_conformance import engine_for

    _, token = gateway_and_token
    engine = engine_for(current_bundle().files)
    BundlePublication.objects.create(status="published", revision=current_bundle().revision, trigger="test")
    now = timezone.now()
    events = []
    for host, port in [("api.partner.example", 443), ("api.partner.example", 443), ("exfil.example", 443)]:
        request = {"identity": IDENTITY, "host": host, "port": port, "protocol": "tcp"}
        for path, document in (("egress/decision", "egress.decision"), ("egress/allow", "egress.allow")):
            events.append({
                "decision_id": str(uuid.uuid4()),
                "path": path,
                "input": request,
                "result": engine.eval_document(document, request),
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "labels": {"id": "gw"},
                "bundles": {"egress": {"revision": current_bundle().revision}},
            })  # fmt: skip
    body = post_opa(client, token, events).json()
    assert body["accepted"] == 6 and body["rejected"] == []
    usage = GrantUsage.objects.get()
    assert usage.grant_id == grant.pk and usage.count == 4  # two connections, each logged on both paths
    assert DeniedTraffic.objects.get().count == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_overlapping_batches_count_each_event_once(gateway: Any, grant: Any) -> None:
    import threading

    from django.db import connection

    from traffic.services.ingest import ingest_decisions

    now = timezone.now()
    events = [opa_event(f"c-{i}", host="api.partner.example", port=443, allow=True, at=now) for i in range(400)]
    results: list[Any] = []

    def upload(batch: list[Any]) -> None:
        try:
            results.append(ingest_decisions(gateway=gateway, events=batch, now=now))
        finally:
            connection.close()

    # The same events in opposite orders, several times at once: the worst case for lock order.
    threads = [threading.Thread(target=upload, args=(events if n % 2 else events[::-1],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4
    assert sum(r.accepted for r in results) == 400
    assert GrantUsage.objects.get().count == 400


@pytest.mark.parametrize("port", ["٤٤٣", "+443", "4_43", 443.0])
def test_an_event_port_is_read_by_the_portals_one_parser(
    client: Client, gateway_and_token: Any, grant: Any, port: Any
) -> None:
    _, token = gateway_and_token
    event = opa_event("d", host="api.partner.example", port=443, allow=True, at=timezone.now())
    body = post_opa(client, token, [{**event, "input": {**event["input"], "port": port}}]).json()
    assert body["accepted"] == 0
    assert "port must be a number from 1 to 65535" in body["rejected"][0]["reason"]


def test_a_host_or_identity_longer_than_its_column_is_a_rejected_record_not_a_failed_batch(
    gateway: Any, submit: Any, approver: Any
) -> None:
    """A wildcard grant allows any first label, however long: a 300-character host allowed by
    *.cdn.example, a long denied host and a long identity are each rejected with the reason;
    the ordinary records of the same batches are kept."""
    from tests.traffic.conftest import flow
    from traffic.models import ObservedFlow
    from traffic.services.ingest import ingest_decisions, ingest_flows

    [wildcard] = approve_request(
        actor=approver,
        request=submit(destinations=[{"host": "*.cdn.example", "port": 443}]),
        now=timezone.now() - timedelta(days=1),
    )
    now = timezone.now()
    long_host = "a" * 300 + ".cdn.example"
    events = [
        opa_event("ok", host="img.cdn.example", port=443, allow=True, at=now, grant_id=wildcard.pk),
        opa_event("long-allowed", host=long_host, port=443, allow=True, at=now, grant_id=wildcard.pk),
        opa_event("long-denied", host="İ" + "b" * 254, port=443, allow=False, at=now),
        {**opa_event("long-identity", host="c.example", port=443, allow=False, at=now),
         "input": {"identity": "spiffe://" + "x" * 300, "host": "c.example", "port": 443}},
    ]  # fmt: skip
    result = ingest_decisions(gateway=gateway, events=events)
    assert result.accepted == 1
    assert [(r["decision_id"], r["reason"]) for r in result.rejected] == [
        ("long-allowed", "host is 312 characters long; at most 255 are kept"),
        ("long-denied", "host is 256 characters long; at most 255 are kept"),
        ("long-identity", "identity is 309 characters long; at most 300 are kept"),
    ]
    assert list(GrantUsage.objects.values_list("grant_id", "count")) == [(wildcard.pk, 1)]

    # "İ" lowers to two characters: 255 as sent, 256 as kept.
    records = [flow(IDENTITY, "fine.example", 443, "deny", now), flow(IDENTITY, "İ" + "d" * 254, 443, "deny", now)]
    result = ingest_flows(gateway=gateway, records=records)
    assert result.accepted == 1
    assert [(r["index"], r["reason"]) for r in result.rejected] == [
        (1, "host is 256 characters long; at most 255 are kept")
    ]
    assert list(DeniedTraffic.objects.values_list("host", "count")) == [("fine.example", 1)]
    assert sorted(ObservedFlow.objects.values_list("host", flat=True)) == ["fine.example", "img.cdn.example"]
