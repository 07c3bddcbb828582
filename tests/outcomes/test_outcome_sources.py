"""Outcome figures from quorum decisions, engine decision logs, denied traffic, gateway kinds and
revocations: each with a known answer for a small seeded scenario."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.services import approve_request
from audit.services import SYSTEM
from exceptions.models import BundlePublication, ExceptionRequest
from exceptions.services.grants import revoke_grant
from outcomes.models import UNREGISTERED, Metric, SnapshotValue
from outcomes.selectors import Filters, outcomes, top_denied
from outcomes.services import take_daily_snapshot
from tests.approvals.conftest import at_the_decision, enrol_mfa
from tests.traffic.conftest import flow, report
from traffic.models import BundleRevisionSeen, EgressGateway, ObservedFlow
from traffic.services.gateways import create_gateway
from traffic.services.ingest import ingest_decisions
from traffic.services.stale import sweep_stale_grants

pytestmark = pytest.mark.django_db


@pytest.fixture
def noon() -> Any:
    """Noon of the latest day it has passed: the scenario's times lie in one UTC day, in the past."""
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    if now > timezone.now() - timedelta(minutes=5):
        now -= timedelta(days=1)
    return now


@pytest.fixture
def gateway(team: Any) -> EgressGateway:
    gateway, _ = create_gateway(actor=SYSTEM, name="eu-proxy", kind="proxy", environment="staging", owner_team=team)
    return gateway


def last_values(day: Any, **filters: Any) -> dict[str, dict[str, float | None]]:
    result = outcomes(filters=Filters(period=7, **filters), today=day)
    return {chart.key: {s.label: s.values[-1] for s in chart.series} for chart in result.charts}


def publish(began: Any, *, took_ms: int, revision: str) -> None:
    publication = BundlePublication.objects.create(
        status="published", trigger="test", duration_ms=took_ms, revision=revision
    )
    BundlePublication.objects.filter(pk=publication.pk).update(created_at=began + timedelta(milliseconds=took_ms))


def opa_event(decision_id: str, identity: str, *, at: Any, revision: str) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "bundles": {"egress": {"revision": revision}},
        "path": "egress/decision",
        "input": {"identity": identity, "host": "nowhere.example", "port": 443, "protocol": "tcp"},
        "result": {"allow": False, "reason": "no grant"},
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }


def test_quorum_time_to_first_decision_and_to_full_approval(
    submit: Any, approver: Any, security_officer: Any, noon: Any
) -> None:
    """Submitted 6 h before noon; the team approved 2 h later, security completed the quorum at noon."""
    enrol_mfa(approver)
    enrol_mfa(security_officer)
    request = submit(data_class="restricted", lifetime=timedelta(days=5))  # high risk: team and security
    ExceptionRequest.objects.filter(pk=request.pk).update(
        created_at=noon - timedelta(hours=6), submitted_at=noon - timedelta(hours=6)
    )
    # Rule high-risk asks for MFA at the decision: each approver stepped up just before deciding.
    team_at = noon - timedelta(hours=4)
    assert approve_request(actor=at_the_decision(approver, at=team_at), request=request, now=team_at) == []
    assert len(approve_request(actor=at_the_decision(security_officer, at=noon), request=request, now=noon)) == 1
    take_daily_snapshot(now=noon)

    times = last_values(noon.date(), team="payments")["time_to_approve"]
    assert times == {
        "approved p90": 6,
        "approved median": 6,
        "first decision p90": 2,
        "first decision median": 2,
    }


def test_engine_time_counts_the_first_decision_with_a_bundle_carrying_the_approval(
    submit: Any, approver: Any, gateway: Any, noon: Any
) -> None:
    """Two approvals: at noon and at 12:10. Publishes began at 11:59 (carries neither),
    12:00:01 (rev-b, pushed 2 s later) and 12:10:01 (rev-c, pushed 1 s later). Engines reported
    rev-b first at 12:00:20 (after a later batch said 12:00:40), rev-c at 12:10:11, and an old
    bundle rev-a whose first decisions predate everything."""
    for at in (noon, noon + timedelta(minutes=10)):
        request = submit(destinations=[{"host": f"h{at.minute}.example", "port": 443}])
        ExceptionRequest.objects.filter(pk=request.pk).update(
            created_at=at - timedelta(hours=1), submitted_at=at - timedelta(hours=1)
        )
        approve_request(actor=approver, request=request, now=at)
    publish(noon - timedelta(minutes=1), took_ms=500, revision="rev-a")
    publish(noon + timedelta(seconds=1), took_ms=2000, revision="rev-b")
    publish(noon + timedelta(minutes=10, seconds=1), took_ms=1000, revision="rev-c")
    who = "spiffe://cluster.local/ns/elsewhere/sa/x"
    batches = [
        [opa_event("a", who, at=noon - timedelta(minutes=5), revision="rev-a")],
        [opa_event("b2", who, at=noon + timedelta(seconds=40), revision="rev-b")],
        [
            opa_event("b1", who, at=noon + timedelta(seconds=20), revision="rev-b"),
            opa_event("c1", who, at=noon + timedelta(minutes=10, seconds=11), revision="rev-c"),
        ],
    ]
    for events in batches:
        ingest_decisions(gateway=gateway, events=events, now=noon + timedelta(minutes=15))
    seen = dict(BundleRevisionSeen.objects.values_list("revision", "first_seen"))
    assert seen["rev-b"] == noon + timedelta(seconds=20)  # the earlier time of a later batch wins
    take_daily_snapshot(now=noon + timedelta(minutes=20))

    update = last_values(noon.date())["policy_update"]
    # Pushed: 3 s and 2 s after approval; in an engine: 20 s and 11 s.
    assert update["pushed median"] == pytest.approx(2.5)
    assert update["in an engine median"] == pytest.approx(15.5)
    assert update["in an engine p90"] == pytest.approx(19.1)


def test_engine_time_skips_a_revision_no_engine_loaded_and_takes_the_later_one(
    submit: Any, approver: Any, gateway: Any, noon: Any
) -> None:
    submit_and_approve = submit(destinations=[{"host": "one.example", "port": 443}])
    approve_request(actor=approver, request=submit_and_approve, now=noon)
    publish(noon + timedelta(seconds=1), took_ms=1000, revision="never-loaded")
    publish(noon + timedelta(seconds=30), took_ms=1000, revision="loaded")
    ingest_decisions(
        gateway=gateway,
        events=[opa_event("x", "someone", at=noon + timedelta(seconds=45), revision="loaded")],
        now=noon + timedelta(minutes=1),
    )
    take_daily_snapshot(now=noon + timedelta(minutes=2))
    update = last_values(noon.date())["policy_update"]
    assert update["pushed median"] == pytest.approx(2)
    assert update["in an engine median"] == pytest.approx(45)


def test_denied_attempts_by_owning_team_and_the_top_callers_with_their_on_ramp(
    client: Client, requester: Any, workload: Any, gateway: Any, noon: Any
) -> None:
    stranger = "spiffe://cluster.local/ns/unknown/sa/miner"
    report(
        gateway,
        *[flow(workload.identity, "paste.example", 443, "deny", noon) for _ in range(3)],
        *[flow(workload.identity, "pypi.example", 443, "deny", noon - timedelta(minutes=i)) for i in range(2)],
        *[flow(stranger, "pool.mining.example", 3333, "deny", noon - timedelta(minutes=i)) for i in range(4)],
        now=noon,
    )
    take_daily_snapshot(now=noon)
    rows = dict(
        SnapshotValue.objects.filter(metric=Metric.DENIED_ATTEMPTS).values_list("team", "value").order_by("team")
    )
    # Three identical flows are one record (de-duplicated by content): 1 + 2 for the workload.
    assert rows == {"payments": 3, UNREGISTERED: 4}
    assert last_values(noon.date())["denied"] == {"denied": 7}
    assert last_values(noon.date(), team="payments")["denied"] == {"denied": 3}

    callers, routes = top_denied(filters=Filters(period=7), today=noon.date())
    assert [(c.identity, c.attempts, c.workload_id) for c in callers] == [
        (stranger, 4, None),
        (workload.identity, 3, workload.pk),
    ]
    assert [(r.host, r.attempts) for r in routes] == [
        ("pool.mining.example", 4),
        ("pypi.example", 2),
        ("paste.example", 1),
    ]
    _, team_routes = top_denied(filters=Filters(period=7, team="payments"), today=noon.date())
    assert {r.identity for r in team_routes} == {workload.identity}

    client.force_login(requester)
    page = client.get("/outcomes/?period=7").content.decode()
    assert f"/requests/new/?workload={workload.pk}&amp;host=pypi.example&amp;port=443" in page
    assert "not a registered workload" in page


def test_share_of_traffic_through_registered_egress_points(team: Any, workload: Any, gateway: Any, noon: Any) -> None:
    node, _ = create_gateway(actor=SYSTEM, name="node-7", kind="cilium", environment="staging", owner_team=team)
    report(gateway, *[flow(workload.identity, f"h{i}.example", 443, "deny", noon) for i in range(3)], now=noon)
    report(node, flow(workload.identity, "h9.example", 443, "deny", noon), now=noon)
    take_daily_snapshot(now=noon)
    assert last_values(noon.date())["traffic_share"] == {"through egress points": 75}
    assert last_values(noon.date(), environment="prod")["traffic_share"] == {"through egress points": None}


def test_a_flow_counts_once_however_many_observers_and_records_reported_it(
    client: Client, requester: Any, team: Any, workload: Any, gateway: Any, noon: Any
) -> None:
    """Flows of the workload (staging, payments) on one day:
    both.example: the node observer, then the proxy, each with several records -> through an egress point;
    proxy-first.example: the proxy, then the node -> through an egress point (a node report changes nothing);
    node.example: only the node, three records and a repeat of the whole batch -> node only;
    a stranger's flow, only the proxy -> through an egress point, under no team.
    The old count (records per gateway kind) would have said 7 via egress points and 7 via nodes."""
    node, _ = create_gateway(actor=SYSTEM, name="node-7", kind="cilium", environment="staging", owner_team=team)
    me, stranger = workload.identity, "spiffe://cluster.local/ns/unknown/sa/x"

    def records(host: str, n: int) -> list[dict[str, Any]]:
        return [flow(me, host, 443, "deny", noon - timedelta(minutes=i)) for i in range(n)]

    report(node, *records("both.example", 2), now=noon)
    report(gateway, *records("both.example", 3), now=noon)
    report(gateway, *records("proxy-first.example", 2), now=noon)
    report(node, *records("proxy-first.example", 2), now=noon)
    node_only = records("node.example", 3)
    report(node, *node_only, now=noon)
    assert report(node, *node_only, now=noon).duplicates == 3
    # The same flow again later that day, as a new record: still one flow.
    report(node, flow(me, "node.example", 443, "deny", noon + timedelta(minutes=1)), now=noon + timedelta(minutes=2))
    report(gateway, flow(stranger, "x.example", 8443, "deny", noon), now=noon)

    assert sorted(ObservedFlow.objects.values_list("host", "via_egress_point")) == [
        ("both.example", True),
        ("node.example", False),
        ("proxy-first.example", True),
        ("x.example", True),
    ]
    take_daily_snapshot(now=noon + timedelta(minutes=5))
    assert last_values(noon.date())["observed_flows"] == {"through egress points": 3, "node only": 1}
    assert last_values(noon.date())["traffic_share"] == {"through egress points": 75}
    # By the workload's team: the stranger's flow belongs to no team.
    assert last_values(noon.date(), team="payments")["observed_flows"] == {"through egress points": 2, "node only": 1}
    assert last_values(noon.date(), team="payments")["traffic_share"] == {"through egress points": pytest.approx(66.67)}
    client.force_login(requester)
    csv_rows = client.get("/outcomes/observed_flows.csv?period=7").content.decode().splitlines()
    assert csv_rows[0] == "day,through egress points (flows),node only (flows)"
    assert f"{noon.date().isoformat()},3.0,1.0" in csv_rows

    # The next day is another day: the same flow counts again there, once.
    report(node, flow(me, "both.example", 443, "deny", noon + timedelta(days=1)), now=noon + timedelta(days=1))
    take_daily_snapshot(now=noon + timedelta(days=1, minutes=5))
    assert last_values(noon.date() + timedelta(days=1))["observed_flows"] == {
        "through egress points": 0,
        "node only": 1,
    }


def test_revocations_by_reason_and_open_stale_notices(
    settings: Any, submit: Any, approver: Any, requester: Any, gateway: Any, noon: Any
) -> None:
    settings.EGRESS_STALE_DAYS_BY_TIER = {"low": 10, "medium": 10, "high": 10}
    settings.EGRESS_STALE_GRACE_DAYS = 3
    start = noon - timedelta(days=20)
    grants = [
        approve_request(
            actor=approver,
            request=submit(destinations=[{"host": f"g{i}.example", "port": 443}], lifetime=timedelta(days=30)),
            now=start,
        )[0]
        for i in range(3)
    ]
    identity = grants[0].identity
    for days in (15, 5, 4.1):  # the gateway reports on the identity (elsewhere) for the whole window
        at = noon - timedelta(days=days)
        report(gateway, flow(identity, "elsewhere.example", 443, "deny", at), now=at)
    assert sweep_stale_grants(now=noon - timedelta(days=4)).noticed == 3
    # One is revoked by hand during the grace period; the sweep revokes the other two.
    report(gateway, flow(identity, "elsewhere.example", 443, "deny", noon - timedelta(hours=2)), now=noon)
    revoke_grant(actor=requester, grant=grants[1], reason="project cancelled", now=noon - timedelta(hours=1))
    assert sweep_stale_grants(now=noon).revoked == 2
    take_daily_snapshot(now=noon)
    assert last_values(noon.date())["revocations"] == {
        "revoked as stale": 2,
        "revoked by a person": 1,
        "open stale notices": 0,
    }


def test_prometheus_counts_ingested_records_and_denied_attempts_without_hosts_or_identities(
    client: Client, workload: Any, gateway: Any, noon: Any
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    report(
        gateway,
        flow(workload.identity, "paste.example", 443, "deny", noon),
        flow(workload.identity, "paste.example", 443, "deny", noon - timedelta(minutes=1)),
        {"identity": workload.identity, "verdict": "maybe"},
        now=noon,
    )
    report(gateway, flow(workload.identity, "paste.example", 443, "deny", noon), now=noon)  # a retry
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").content.decode())}
    ingested = {
        (s.labels["source"], s.labels["gateway_kind"], s.labels["outcome"]): s.value
        for s in families["egress_ingested_records"].samples
        if s.name == "egress_ingested_records_total"
    }
    assert len(ingested) == 2 * 4 * 4
    assert ingested[("flows", "proxy", "accepted")] == 2
    assert ingested[("flows", "proxy", "duplicates")] == 1
    assert ingested[("flows", "proxy", "rejected")] == 1
    assert ingested[("opa", "cilium", "accepted")] == 0
    [denied] = [s for s in families["egress_denied_attempts"].samples if s.name == "egress_denied_attempts_total"]
    assert denied.value == 2 and denied.labels == {}
    text = client.get("/metrics").content.decode()
    assert "paste.example" not in text and workload.identity not in text


def test_wildcard_chart_states_its_change_over_the_period(submit: Any, approver: Any, noon: Any) -> None:
    def wildcard(host: str, at: Any) -> None:
        approve_request(actor=approver, request=submit(destinations=[{"host": host, "port": 443}]), now=at)

    yesterday = noon - timedelta(days=1)
    wildcard("*.files.example", yesterday - timedelta(hours=1))
    take_daily_snapshot(now=yesterday)
    wildcard("*.cdn.example", noon - timedelta(hours=1))
    wildcard("*.logs.example", noon - timedelta(hours=1))
    take_daily_snapshot(now=noon)
    [chart] = [c for c in outcomes(filters=Filters(period=7), today=noon.date()).charts if c.key == "wildcards"]
    assert chart.series[0].values[-2:] == [1, 3]
    assert chart.description.endswith("Over the period: 1 to 3 (+2).")


def test_records_arriving_after_midnight_reach_their_own_days_snapshot(
    team: Any, workload: Any, gateway: Any, noon: Any
) -> None:
    """Day D closed at 23:59 with a.example through the proxy and b.example seen only by a node.
    After midnight the proxy's late upload brings b.example (23:58) and the node's c.example
    (23:59): the next run re-takes D's traffic, as it does for every day still accepting records,
    and leaves a day that has left that window (its flows pruned) as it was."""
    from django.conf import settings

    node, _ = create_gateway(actor=SYSTEM, name="node-7", kind="cilium", environment="staging", owner_team=team)
    me = workload.identity
    day_d = (noon - timedelta(days=2)).replace(hour=23, minute=0)
    report(gateway, flow(me, "a.example", 443, "deny", day_d), now=day_d)
    report(node, flow(me, "b.example", 443, "deny", day_d), now=day_d)
    take_daily_snapshot(now=day_d + timedelta(minutes=59))
    assert last_values(day_d.date())["observed_flows"] == {"through egress points": 1, "node only": 1}
    assert last_values(day_d.date())["denied"] == {"denied": 2}

    after_midnight = day_d + timedelta(hours=1, minutes=10)
    report(gateway, flow(me, "b.example", 443, "deny", day_d + timedelta(minutes=58)), now=after_midnight)
    report(node, flow(me, "c.example", 443, "deny", day_d + timedelta(minutes=59)), now=after_midnight)
    report(gateway, flow(me, "d.example", 443, "deny", after_midnight), now=after_midnight)
    take_daily_snapshot(now=day_d + timedelta(hours=1, minutes=59))
    assert last_values(day_d.date())["observed_flows"] == {"through egress points": 2, "node only": 1}
    assert last_values(day_d.date())["denied"] == {"denied": 4}
    next_day = after_midnight.date()
    assert last_values(next_day)["observed_flows"] == {"through egress points": 1, "node only": 0}
    assert SnapshotValue.objects.filter(day=day_d.date(), metric=Metric.TRAFFIC_VIA_EGRESS_POINTS).count() == 1

    # Once D has left the window its flows are pruned; a snapshot then keeps D's figures.
    ObservedFlow.objects.filter(day=day_d.date()).delete()
    take_daily_snapshot(now=day_d + timedelta(days=settings.EGRESS_INGEST_DEDUP_DAYS + 1, hours=1))
    assert last_values(day_d.date())["observed_flows"] == {"through egress points": 2, "node only": 1}


def test_a_drafts_time_to_approve_starts_when_it_is_submitted(
    client: Any, submit: Any, requester: Any, approver: Any, noon: Any
) -> None:
    """Drafted at 06:00, submitted at 11:00, approved at noon: one hour of waiting, not six."""
    from prometheus_client.parser import text_string_to_metric_families

    from exceptions.services.requests import submit_draft

    draft = submit(draft=True)
    assert draft.submitted_at is None
    ExceptionRequest.objects.filter(pk=draft.pk).update(created_at=noon - timedelta(hours=6))
    submitted = submit_draft(actor=requester, request=ExceptionRequest.objects.get(pk=draft.pk))
    ExceptionRequest.objects.filter(pk=draft.pk).update(submitted_at=noon - timedelta(hours=1))
    approve_request(actor=approver, request=submitted, now=noon)
    take_daily_snapshot(now=noon)
    times = last_values(noon.date(), team="payments")["time_to_approve"]
    assert times["approved median"] == 1 and times["first decision median"] == 1
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").content.decode())}
    [total] = [
        s.value for s in families["egress_time_to_approve_seconds"].samples if s.name.endswith("_sum") and s.value
    ]
    assert total == pytest.approx(3600)
