"""Issue 17 §1: egress points speak only for what they can see, and no record fails a batch.

Tried as the issue's attacker: a dev Cilium node observer's token posting about a staging
identity, OPA events planting bundle revisions, a NUL byte and a byte count near 2^63, and a
gateway posting as fast as it can.
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from approvals.services import approve_request
from audit.models import AuditEvent
from audit.services import SYSTEM
from exceptions.models import BundleArtifact, BundlePublication
from exceptions.services.publications import ensure_served_bundle, publish_bundle
from tests.factories import WorkloadFactory
from tests.traffic.conftest import flow, report
from traffic.models import (
    BundleRevisionSeen,
    DeniedTraffic,
    EgressGateway,
    GrantUsage,
    IdentityFeed,
    IngestBatch,
    ObservedFlow,
    StaleNotice,
)
from traffic.scope import GatewayScope, Owner
from traffic.services.gateways import create_gateway
from traffic.services.ingest import MAX_COUNT, ingest_decisions
from traffic.services.stale import sweep_stale_grants

pytestmark = pytest.mark.django_db

STAGING = "spiffe://cluster.local/ns/payments/sa/checkout-api"  # the `workload` fixture (staging)
WINDOW = 10


@pytest.fixture
def dev_observer(team: Any) -> tuple[EgressGateway, str]:
    return create_gateway(actor=SYSTEM, name="dev-node", kind="cilium", environment="dev", owner_team=team)


@pytest.fixture
def dev_workload(team: Any) -> Any:
    return WorkloadFactory(team=team, name="dev-api", namespace="payments-dev", environment="dev")


@pytest.fixture
def grant(submit: Any, approver: Any) -> Any:
    [grant] = approve_request(
        actor=approver,
        request=submit(lifetime=timedelta(days=30)),  # staging workload -> api.partner.example:443
        now=timezone.now() - timedelta(days=WINDOW + 2),
    )
    return grant


@pytest.fixture
def short_window(settings: Any) -> None:
    settings.EGRESS_STALE_DAYS_BY_TIER = {"low": WINDOW, "medium": WINDOW, "high": WINDOW}
    settings.EGRESS_STALE_GRACE_DAYS = 3


def post_flows(client: Client, token: str, records: list[Any]) -> Any:
    return client.post(
        "/api/v1/ingest/flows",
        data="\n".join(json.dumps(r) for r in records),
        content_type="application/x-ndjson",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def post_opa(client: Client, token: str, events: list[Any] | bytes) -> Any:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return client.post(
        "/api/v1/ingest/opa/logs",
        data=gzip.compress(body),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def decision(decision_id: str, identity: str, *, at: Any, allow: bool = False, revision: str | None = None) -> dict:
    event: dict[str, Any] = {
        "decision_id": decision_id,
        "path": "egress/decision",
        "input": {"identity": identity, "host": "elsewhere.example", "port": 443, "protocol": "tcp"},
        "result": {"allow": allow},
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }
    if revision is not None:
        event["bundles"] = {"egress": {"revision": revision}}
    return event


# --- the scope, bound at creation -------------------------------------------------------------


def test_create_gateway_binds_its_scope_and_prints_the_token_last(team: Any) -> None:
    out = StringIO()
    call_command(
        "create_gateway", "eu-node", "--kind", "cilium", "--environment", "dev", "--environment", "staging",
        "--team", "payments", "--namespace", "payments", "--identity-prefix", "spiffe://cluster.local/",
        "--owner-team", "payments", stdout=out,
    )  # fmt: skip
    lines = out.getvalue().strip().splitlines()
    gateway = EgressGateway.objects.get(name="eu-node")
    assert lines[-1].startswith("egw_") and "environment dev, staging; team payments" in out.getvalue()
    assert (gateway.environment, gateway.scope_environments, gateway.scope_teams) == (
        "dev",
        ["dev", "staging"],
        [team.slug],
    )
    assert (gateway.scope_namespaces, gateway.scope_identity_prefixes) == (["payments"], ["spiffe://cluster.local/"])
    assert gateway.owner_team == team
    event = AuditEvent.objects.get(action="gateway.created", object_id=str(gateway.pk))
    assert event.after["scope"]["environments"] == ["dev", "staging"]


def test_a_scope_naming_an_unknown_team_is_refused(db: Any) -> None:
    with pytest.raises(CommandError, match="No team with slug 'ghosts'"):
        call_command("create_gateway", "x-node", "--kind", "cilium", "--environment", "dev", "--team", "ghosts")
    assert not EgressGateway.objects.exists()


def test_existing_gateways_are_scoped_to_the_environment_they_were_registered_for() -> None:
    """The migration's backfill, run on the historical model as the migration runs it."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("traffic.migrations.0004_gateway_scope_and_feed_per_gateway")
    gateway, _ = create_gateway(actor=SYSTEM, name="old-nat", kind="nat", environment="prod")
    EgressGateway.objects.filter(pk=gateway.pk).update(scope_environments=[])
    migration.scope_to_registered_environment(apps, None)
    gateway.refresh_from_db()
    assert gateway.scope_environments == ["prod"]


def test_the_scope_decides_by_the_registered_workload_and_its_prefixes() -> None:
    staging = Owner("staging", "payments", "payments")
    dev_only = GatewayScope(environments=frozenset({"dev"}))
    assert "staging workload" in (dev_only.refusal(STAGING, staging) or "")
    assert dev_only.refusal("spiffe://unregistered/x", None) is None  # denied attempts of the unregistered: on-ramp
    teams = GatewayScope(environments=frozenset({"staging"}), teams=frozenset({"search"}))
    assert "belongs to team payments" in (teams.refusal(STAGING, staging) or "")
    assert "not a registered workload" in (teams.refusal("spiffe://unregistered/x", None) or "")
    ns = GatewayScope(environments=frozenset({"staging"}), namespaces=frozenset({"payments"}))
    assert ns.refusal(STAGING, staging) is None
    prefixed = GatewayScope(environments=frozenset({"staging"}), identity_prefixes=("spiffe://other/",))
    assert "outside the gateway's scope" in (prefixed.refusal(STAGING, staging) or "")
    assert "no scope" in (GatewayScope(environments=frozenset()).refusal(STAGING, staging) or "")


# --- a record outside the scope changes nothing --------------------------------------------------


def test_a_dev_gateways_records_about_a_staging_identity_change_nothing_and_the_rest_count(
    client: Client, dev_observer: Any, dev_workload: Any, grant: Any
) -> None:
    gateway, token = dev_observer
    now = timezone.now()
    response = post_flows(
        client,
        token,
        [
            flow(STAGING, "elsewhere.example", 443, "deny", now),
            flow(STAGING, "api.partner.example", 443, "allow", now, bytes=10),
            flow(dev_workload.identity, "elsewhere.example", 443, "deny", now),
        ],
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["out_of_scope"], body["rejected_count"]) == (1, 2, 2)
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert all("is a staging workload; the gateway's scope is environment dev" in r["reason"] for r in body["rejected"])
    # Nothing about the staging identity: no denied attempt, no usage, no feed, no flow.
    assert not DeniedTraffic.objects.filter(identity=STAGING).exists()
    assert not GrantUsage.objects.exists()
    assert not IdentityFeed.objects.filter(identity=STAGING).exists()
    assert not ObservedFlow.objects.filter(identity=STAGING).exists()
    # The in-scope record of the same batch counts.
    assert DeniedTraffic.objects.get(identity=dev_workload.identity).count == 1
    assert IdentityFeed.objects.filter(identity=dev_workload.identity, gateway=gateway).exists()
    assert IngestBatch.objects.get(gateway=gateway).out_of_scope == 2


def test_a_dev_gateways_opa_decision_about_a_staging_identity_is_refused(
    client: Client, dev_observer: Any, workload: Any
) -> None:
    gateway, token = dev_observer
    body = post_opa(client, token, [decision("d-1", STAGING, at=timezone.now())]).json()
    assert (body["accepted"], body["out_of_scope"]) == (0, 1)
    assert body["rejected"][0]["decision_id"] == "d-1" and "staging workload" in body["rejected"][0]["reason"]
    assert not DeniedTraffic.objects.exists() and not IdentityFeed.objects.exists()
    gateway.refresh_from_db()
    assert gateway.last_record_at is None


# --- stale revocation needs a covering feed over the whole window ---------------------------------


def test_a_dev_gateways_deny_lines_do_not_make_a_staging_feed_look_fresh(
    short_window: None, dev_observer: Any, grant: Any
) -> None:
    """The issue's attack: one deny line from another environment's observer made the staging
    team's feed look fresh, and the sweep revoked their grants 8 days later."""
    gateway, _ = dev_observer
    now = timezone.now()
    for at in (now - timedelta(days=WINDOW + 1), now - timedelta(hours=1)):
        report(gateway, flow(STAGING, "elsewhere.example", 443, "deny", at), now=at)
    assert sweep_stale_grants(now=now).noticed == 0
    assert sweep_stale_grants(now=now + timedelta(days=8)).revoked == 0
    grant.refresh_from_db()
    assert grant.status == "active" and not StaleNotice.objects.exists()


def test_a_feed_row_from_a_gateway_that_does_not_cover_the_identity_is_not_evidence(
    short_window: None, dev_observer: Any, grant: Any
) -> None:
    """The sweep asks the scope itself, not only ingestion: a feed row a dev gateway holds
    about a staging identity (written before scopes, say) never makes its silence count."""
    gateway, _ = dev_observer
    now = timezone.now()
    IdentityFeed.objects.create(
        identity=STAGING, gateway=gateway, first_seen=now - timedelta(days=60), last_seen=now - timedelta(hours=1)
    )
    assert sweep_stale_grants(now=now).noticed == 0


def test_freshness_over_the_window_must_come_from_one_covering_gateway(
    short_window: None, gateway: Any, grant: Any, team: Any
) -> None:
    """Freshness is kept per egress point: one staging gateway that reported early and went
    silent, and another that started two days ago, do not add up to a whole window."""
    later, _ = create_gateway(actor=SYSTEM, name="eu-proxy-2", kind="proxy", environment="staging", owner_team=team)
    now = timezone.now()
    for at in (now - timedelta(days=WINDOW + 1), now - timedelta(days=5)):
        report(gateway, flow(STAGING, "elsewhere.example", 443, "deny", at), now=at)
    for at in (now - timedelta(days=2), now - timedelta(hours=1)):
        report(later, flow(STAGING, "elsewhere.example", 443, "deny", at), now=at)
    assert IdentityFeed.objects.filter(identity=STAGING).count() == 2
    assert sweep_stale_grants(now=now).noticed == 0
    report(gateway, flow(STAGING, "elsewhere.example", 443, "deny", now), now=now)  # the first one resumes
    assert sweep_stale_grants(now=now).noticed == 1


def test_a_dev_gateways_flow_line_does_not_keep_a_staging_grant_alive(
    short_window: None, gateway: Any, dev_observer: Any, grant: Any
) -> None:
    """The staging gateway's feed notices the unused grant; a dev observer's allowed flow for
    the staging identity during the grace does not clear it, and the grant is revoked."""
    dev, _ = dev_observer
    now = timezone.now()
    for at in (now - timedelta(days=WINDOW + 1), now - timedelta(hours=1)):
        report(gateway, flow(STAGING, "elsewhere.example", 443, "deny", at), now=at)
    assert sweep_stale_grants(now=now).noticed == 1
    later = now + timedelta(days=1)
    result = report(dev, flow(STAGING, "api.partner.example", 443, "allow", later), now=later)
    assert (result.accepted, result.out_of_scope) == (0, 1)
    assert not GrantUsage.objects.exists()
    assert sweep_stale_grants(now=now + timedelta(days=3, minutes=1)).revoked == 1
    grant.refresh_from_db()
    assert grant.status == "revoked"


def test_a_notice_opened_on_a_non_covering_feed_revokes_nothing(
    short_window: None, dev_observer: Any, grant: Any
) -> None:
    """A notice opened before scopes on another environment's word stays open, never revokes."""
    dev, _ = dev_observer
    now = timezone.now()
    IdentityFeed.objects.create(identity=STAGING, gateway=dev, first_seen=now - timedelta(days=60), last_seen=now)
    StaleNotice.objects.create(grant=grant, noticed_at=now, revoke_after=now + timedelta(days=3))
    assert sweep_stale_grants(now=now + timedelta(days=4)).revoked == 0
    grant.refresh_from_db()
    assert grant.status == "active"


# --- bundle revisions the portal never made --------------------------------------------------------


def test_an_opa_event_naming_a_revision_the_portal_never_made_is_refused_and_counted(
    client: Client, gateway_and_token: Any, security_officer: Any
) -> None:
    gateway, token = gateway_and_token
    BundlePublication.objects.create(status=BundlePublication.Status.PUBLISHED, revision="rev-real", trigger="t")
    now = timezone.now()
    body = post_opa(
        client,
        token,
        [
            decision("planted", STAGING, at=now, revision="rev-planted"),
            decision("honest", STAGING, at=now, revision="rev-real"),
        ],
    ).json()
    assert (body["accepted"], body["unknown_revision"]) == (1, 1)
    assert body["rejected"] == [
        {
            "index": 0,
            "reason": "bundle revision 'rev-planted' was never published by the portal",
            "decision_id": "planted",
        }
    ]
    assert set(BundleRevisionSeen.objects.values_list("revision", flat=True)) == {"rev-real"}
    assert DeniedTraffic.objects.get().count == 1
    client.force_login(security_officer)
    page = client.get("/operations/").content.decode()
    row = next(line for line in page.splitlines() if gateway.name in line and "<td>" in line)
    assert "<td>1</td><td>0</td><td>1</td>" in row  # rejected, outside its scope, unknown revision


def test_a_revision_the_bundle_endpoint_served_is_known_before_it_is_committed(gateway: Any) -> None:
    # A fresh install's first poll stores a bundle no publish has committed yet.
    revision, _ = ensure_served_bundle()
    result = ingest_decisions(
        gateway=gateway, events=[decision("early", STAGING, at=timezone.now(), revision=revision)]
    )
    assert (result.accepted, result.unknown_revision) == (1, 0)
    assert BundleRevisionSeen.objects.filter(revision=revision).exists()


def test_a_served_revision_stays_known_after_its_archive_is_pruned(
    gateway: Any, settings: Any, submit: Any, approver: Any, policy_repo: Path
) -> None:
    """An engine still running the first bundle a fresh install served (no publication row) after
    newer publishes pruned its archive: its decisions are honest and are not refused."""
    settings.OPA_BUNDLE_ARTIFACTS_KEPT = 1
    first, _ = ensure_served_bundle()
    approve_request(actor=approver, request=submit(destinations=[{"host": "new.example", "port": 443}]))
    assert publish_bundle(trigger="test").revision != first
    assert not BundleArtifact.objects.filter(revision=first).exists()
    assert not BundlePublication.objects.filter(revision=first).exists()
    result = ingest_decisions(gateway=gateway, events=[decision("late", STAGING, at=timezone.now(), revision=first)])
    assert (result.accepted, result.unknown_revision) == (1, 0)


# --- bad records never fail a batch; counters saturate -----------------------------------------------


def test_nul_bytes_and_out_of_range_numbers_are_refused_per_record(client: Client, gateway_and_token: Any) -> None:
    _, token = gateway_and_token
    now = timezone.now()
    records = [
        flow(STAGING + "\x00", "elsewhere.example", 443, "deny", now),
        flow(STAGING, "else\x00where.example", 443, "deny", now),
        flow(STAGING, "elsewhere.example", 443, "deny", now, bytes=2**63),
        flow(STAGING, "elsewhere.example", 443, "deny", now, bytes=2**70),
        flow(STAGING, "elsewhere.example", 2**63, "deny", now),
        flow("x" * 10_000, "elsewhere.example", 443, "deny", now),
        flow(STAGING, "elsewhere.example", 443, "deny", now),
    ]
    response = post_flows(client, token, records)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and [r["index"] for r in body["rejected"]] == [0, 1, 2, 3, 4, 5]
    reasons = [r["reason"] for r in body["rejected"]]
    assert "identity contains a NUL character" in reasons[0] and "host" in reasons[1]
    assert "out of range" in reasons[2] and "whole number" in reasons[3] and "port" in reasons[4]
    assert "at most 300 are kept" in reasons[5]
    assert DeniedTraffic.objects.get().count == 1


def test_opa_events_with_nul_bytes_or_huge_numbers_are_refused_per_record(
    client: Client, gateway_and_token: Any
) -> None:
    _, token = gateway_and_token
    now = timezone.now()
    bad_identity = decision("nul", STAGING + "\x00", at=now)
    bad_revision = decision("rev", STAGING, at=now)
    bad_revision["bundles"] = {"egress": {"revision": "a\x00b"}}
    events = [bad_identity, bad_revision, decision("ok", STAGING, at=now)]
    # A number no double holds: orjson refuses the body, the record is refused on its own.
    body = json.dumps(events).encode().replace(b'"port": 443', b'"port": 1e400', 1)
    response = post_opa(client, token, body)
    assert response.status_code == 200
    result = response.json()
    assert result["accepted"] == 1 and [r["index"] for r in result["rejected"]] == [0, 1]
    assert "port" in result["rejected"][0]["reason"] or "NUL" in result["rejected"][0]["reason"]
    assert "revision" in result["rejected"][1]["reason"]


def test_a_byte_count_near_2_63_saturates_and_the_grants_day_keeps_counting(gateway: Any, grant: Any) -> None:
    """The second case of the issue jammed the grant's daily row for the rest of the day."""
    now = timezone.now()
    first = report(gateway, flow(STAGING, "api.partner.example", 443, "allow", now, bytes=MAX_COUNT - 10), now=now)
    assert first.accepted == 1
    # Two records in one batch whose sum overflows, then a later batch: all count, bytes saturated.
    second = report(
        gateway,
        flow(STAGING, "api.partner.example", 443, "allow", now, bytes=2**62, n=1),
        flow(STAGING, "api.partner.example", 443, "allow", now, bytes=2**62, n=2),
        now=now,
    )
    third = report(gateway, flow(STAGING, "api.partner.example", 443, "allow", now, bytes=100, n=3), now=now)
    assert (second.accepted, third.accepted) == (2, 1)
    usage = GrantUsage.objects.get(grant=grant)
    assert (usage.count, usage.bytes) == (4, MAX_COUNT)


def test_a_denied_counter_at_its_ceiling_stays_there(gateway: Any) -> None:
    now = timezone.now()
    report(gateway, flow(STAGING, "elsewhere.example", 443, "deny", now), now=now)
    DeniedTraffic.objects.update(count=MAX_COUNT - 1)
    result = report(gateway, *[flow(STAGING, "elsewhere.example", 443, "deny", now, n=n) for n in range(3)], now=now)
    assert result.accepted == 3
    assert DeniedTraffic.objects.get().count == MAX_COUNT


# --- a rate limit per egress point --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["locmem", "file"])
def test_each_gateway_token_has_its_own_rate_limit_answered_with_429_and_retry_after(
    client: Client,
    gateway_and_token: Any,
    dev_observer: Any,
    workload: Any,
    settings: Any,
    tmp_path: Path,
    backend: str,
) -> None:
    """With the embedded file cache too (the default without Redis), not only with Redis."""
    settings.EGRESS_INGEST_RATE_PER_MINUTE = 2
    caches = {
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ingest-limit"},
        "file": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)},
    }
    _, token = gateway_and_token
    _, other = dev_observer
    record = [flow(STAGING, "elsewhere.example", 443, "deny", timezone.now())]
    with override_settings(CACHES={"default": caches[backend]}):
        from django.core.cache import cache

        cache.clear()
        codes = [post_flows(client, token, record).status_code for _ in range(3)]
        refused = post_flows(client, token, record)
        assert codes == [200, 200, 429] and refused.status_code == 429
        assert 1 <= int(refused["Retry-After"]) <= 60 and refused["RateLimit-Limit"] == "2"
        assert "retry after" in refused.json()["detail"]
        assert post_flows(client, other, record).status_code == 200  # another gateway's budget
    assert DeniedTraffic.objects.get(identity=STAGING).count == 1  # the retry counted once, the refusals not
