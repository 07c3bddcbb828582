"""One writer for grant status: nothing but exceptions/services/lifecycle.py writes it, and each
change it makes is audited once, sent once as a webhook and re-arms the publish.

Three parts: the static scan (and proof that it catches a new writer), every
transition of the table through its entry point, and each revocation kind through
the entry point a person or job uses.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals import breakglass
from approvals.models import BreakGlassUse, ChangeWindow
from approvals.services import approve_request
from audit.models import AuditEvent
from audit.services import SYSTEM
from audit.verification import verify_chain
from exceptions.admin import GrantAdmin
from exceptions.choices import GrantStatus, RevokeKind
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.batches import activate_due_grants, expire_due_grants
from exceptions.services.grants import issue_grants, offboard_workload, revoke_grant
from exceptions.state import GRANT_INITIAL_STATUSES, GRANT_TRANSITIONS, TransitionError
from foundation.outbox.models import OutboxMessage
from tests.approvals.conftest import enrol_mfa
from tests.approvals.test_breakglass import PAGE, form, signed_in, step_up
from tests.approvals.test_concurrent_approval import _run_together
from tests.factories import GrantFactory
from tests.grant_writes import ROOT, WRITER, project_modules, scan_project, scan_source
from tests.traffic.conftest import flow, report
from traffic.services.gateways import create_gateway
from traffic.services.stale import sweep_stale_grants
from webhooks.events import EVENTS
from webhooks.models import WebhookDelivery, WebhookSubscription

PUBLISH = "bundle.publish"

# --- The static scan ------------------------------------------------------------------


def test_only_the_lifecycle_module_writes_grant_status() -> None:
    writes = scan_project()
    others = [str(w) for w in writes if w.path != WRITER]
    assert others == [], "Grant status is written outside exceptions/services/lifecycle.py; call it instead."
    # The scan sees the writer's own writes: it reads the code it guards.
    assert {w.what.split("(")[0] for w in writes if w.path == WRITER} >= {"Grant", "Grant.objects.bulk_create"}
    assert len([w for w in writes if w.path == WRITER]) >= 5


def test_the_scan_reads_every_app_and_skips_only_tests_migrations_and_bench() -> None:
    relative = {m.relative_to(ROOT).as_posix() for m in project_modules()}
    for module in (
        "exceptions/services/lifecycle.py",
        "exceptions/services/grants.py",
        "exceptions/services/batches.py",
        "approvals/breakglass.py",
        "approvals/services.py",
        "traffic/services/stale.py",  # under egress_portal/ until it moves up a level
        "outcomes/services.py",
    ):
        assert any(r == module or r.endswith(f"/{module}") for r in relative), module
    assert not [r for r in relative if r.split("/")[0] in {"tests", "bench"} or "/migrations/" in r]


# The writers this issue removed, as they were, and other shapes a new one could take.
FORBIDDEN = {
    "revoke by conditional update": """
def revoke(locked, now):
    Grant.objects.filter(pk=locked.pk, status=locked.status).update(status=GrantStatus.REVOKED, revoked_at=now)
""",
    "the old supersede": """
def supersede(pk):
    old = Grant.objects.select_for_update().filter(pk=pk).first()
    old.status = GrantStatus.EXPIRED
    old.save(update_fields=["status"])
""",
    "tuple assignment on a locked grant": """
def revoke(grant, user, now):
    locked = Grant.objects.select_for_update().get(pk=grant.pk)
    locked.status, locked.revoked_by = "revoked", user
""",
    "the old stale sweep": """
def revoke_due(revoked_ids, now):
    Grant.objects.filter(pk__in=revoked_ids, status=GrantStatus.ACTIVE).update(
        status=GrantStatus.REVOKED, revoked_at=now, revoke_reason="stale"
    )
""",
    "the old break-glass close": """
def close(locked, user, now, reason):
    return Grant.objects.filter(request_id=locked.request_id, breakglass=True).update(
        status="revoked", revoked_by=user, revoked_at=now, revoke_reason=reason
    )
""",
    "the old break-glass issue": """
def open_path(request, cleaned, now):
    Grant.objects.bulk_create(Grant(request=request, host=d.host, status="active") for d in cleaned)
""",
    "a queryset kept in a variable": """
def close_all(team, target):
    qs = Grant.objects.filter(workload__team=team)
    qs.update(status=target)
""",
    "a related manager": """
def close(request):
    request.grants.filter(status="active").update(status="expired")
""",
    "create on the manager": """
def make(request):
    return request.grants.create(host="x.example", port=443)
""",
    "bulk_update naming status": """
def save_all(rows):
    for row in rows:
        row.revoke_reason = "x"
    Grant.objects.bulk_update(rows, ["status", "revoke_reason"])
""",
    "a loop variable over grants": """
def expire(request):
    for g in Grant.objects.filter(request=request):
        g.status = "expired"
        g.save()
""",
    "setattr": """
def force(grant, value):
    setattr(grant, "status", value)
""",
    "update with a spread dict": """
def apply(pk, fields):
    Grant.objects.filter(pk=pk).update(**fields)
""",
    "raw SQL": """
def expire_raw(cursor, now):
    table = Grant._meta.db_table
    cursor.execute(f'UPDATE "{table}" SET "status" = %s WHERE "expires_at" <= %s', ["expired", now])
""",
    "any object given a GrantStatus": """
def mark(row):
    row.status = GrantStatus.REVOKED
""",
}

ALLOWED = {
    "a notice about a grant": """
def clear(grant):
    StaleNotice.objects.filter(grant=grant).update(status="cleared")
    StaleNotice.objects.update_or_create(grant=grant, defaults={"status": "noticed"})
""",
    "a request's status": """
def move(request, target):
    request.status = target
    ExceptionRequest.objects.filter(pk=request.pk).update(status=target)
""",
    "grant usage rows and other fields of a grant": """
def seen(rows, grant):
    GrantUsage.objects.bulk_create(rows)
    Grant.objects.filter(pk=grant.pk).update(do_not_renew=True)
    grant.expires_at = grant.valid_from
""",
    "reading grant status": """
def live(now):
    return [g for g in Grant.objects.filter(status=GrantStatus.ACTIVE) if g.status == GrantStatus.ACTIVE]
""",
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_the_scan_flags_a_new_writer(name: str) -> None:
    writes = scan_source(FORBIDDEN[name], f"approvals/{name.replace(' ', '_')}.py")
    assert writes, f"the scan missed: {name}"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_the_scan_leaves_other_writes_alone(name: str) -> None:
    assert scan_source(ALLOWED[name]) == []


def test_the_admin_cannot_edit_a_grant() -> None:
    admin = GrantAdmin(Grant, None)
    assert not admin.has_change_permission(None) and not admin.has_add_permission(None)


# --- Every transition: one audit event, one webhook row, one publish ---------------------------


@pytest.fixture
def hooks(db: Any) -> WebhookSubscription:
    """A receiver listening to every grant event (a ticketing system mirroring grants)."""
    return WebhookSubscription.objects.create(
        url="https://hooks.example.com/egress",
        events=sorted(e for e in EVENTS if e.startswith("grant.")),
        secret="whsec_lifecycle-test",
    )


@dataclass
class Mark:
    audit: int
    delivery: int


def mark() -> Mark:
    last_event = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    last_delivery = WebhookDelivery.objects.order_by("-id").values_list("id", flat=True).first() or 0
    OutboxMessage.objects.filter(kind__in=[PUBLISH, settings.EGRESS_BREAKGLASS_PUBLISH_KIND]).delete()
    return Mark(last_event, last_delivery)


def assert_signalled(since: Mark, grant: Grant, *, event: str, action: str, publish: str = PUBLISH) -> dict[str, Any]:
    """Exactly one audit event and one webhook delivery (with its outbox row) for ``grant``, and a publish."""
    events = list(AuditEvent.objects.filter(id__gt=since.audit, object_type="exceptions.grant", object_id=grant.pk))
    assert [e.action for e in events] == [action]
    deliveries = [
        d
        for d in WebhookDelivery.objects.filter(id__gt=since.delivery)
        if d.body["data"].get("grant", {}).get("id") == grant.pk
    ]
    assert [d.event for d in deliveries] == [event]
    assert OutboxMessage.objects.filter(kind="webhook", payload={"delivery": deliveries[0].pk}).count() == 1
    assert OutboxMessage.objects.filter(kind=publish).count() == 1, "the publish is re-armed"
    data: dict[str, Any] = deliveries[0].body["data"]
    assert data["grant"]["status"] == Grant.objects.get(pk=grant.pk).status
    return data


@dataclass(frozen=True)
class Path:
    source: str  # "new" for issuing
    target: str
    run: Callable[[Grant, datetime, Any], None]
    event: str
    action: str


def _activate(grant: Grant, now: datetime, people: Any) -> None:
    assert activate_due_grants(now=grant.valid_from + timedelta(seconds=1)) == 1


def _expire(grant: Grant, now: datetime, people: Any) -> None:
    assert expire_due_grants(now=grant.expires_at + timedelta(seconds=1)) == 1


def _revoke(grant: Grant, now: datetime, people: Any) -> None:
    revoke_grant(actor=people.security_officer, grant=grant, reason="Vendor breached.", now=now)


PATHS = [
    Path(GrantStatus.SCHEDULED, GrantStatus.ACTIVE, _activate, "grant.activated", "grant.activated"),
    Path(GrantStatus.SCHEDULED, GrantStatus.EXPIRED, _expire, "grant.expired", "grant.expired"),
    Path(GrantStatus.SCHEDULED, GrantStatus.REVOKED, _revoke, "grant.revoked", "grant.revoked"),
    Path(GrantStatus.ACTIVE, GrantStatus.EXPIRED, _expire, "grant.expired", "grant.expired"),
    Path(GrantStatus.ACTIVE, GrantStatus.REVOKED, _revoke, "grant.revoked", "grant.revoked"),
]
ISSUE_PATHS = [("new", GrantStatus.SCHEDULED), ("new", GrantStatus.ACTIVE)]


def test_the_paths_cover_every_transition_of_the_table() -> None:
    table = {(source, target) for source, targets in GRANT_TRANSITIONS.items() for target in targets}
    assert {(p.source, p.target) for p in PATHS} == table
    assert set(ISSUE_PATHS) == {("new", status) for status in GRANT_INITIAL_STATUSES}


@pytest.mark.django_db
@pytest.mark.parametrize("path", PATHS, ids=lambda p: f"{p.source}->{p.target}")
def test_each_transition_is_audited_sent_and_published(
    path: Path, hooks: Any, security_officer: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now()
    if path.source == GrantStatus.SCHEDULED:
        # Scheduled and still to start, or scheduled and already past its end (a freeze outlasted it).
        start = now + timedelta(hours=1) if path.target != GrantStatus.EXPIRED else now - timedelta(days=2)
        grant = GrantFactory(
            status=GrantStatus.SCHEDULED,
            valid_from=start,
            expires_at=start + timedelta(days=1),
            request__status="approved",
        )
    else:
        grant = GrantFactory(status=GrantStatus.ACTIVE, request__status="active")
    since = mark()
    path.run(grant, now, type("People", (), {"security_officer": security_officer}))
    grant.refresh_from_db()
    assert grant.status == path.target
    assert_signalled(since, grant, event=path.event, action=path.action)
    assert verify_chain().ok


@pytest.mark.django_db
@pytest.mark.parametrize("starts_in", [timedelta(0), timedelta(hours=3)], ids=["active", "scheduled"])
def test_issuing_is_audited_sent_and_published(
    starts_in: timedelta, hooks: Any, submit: Any, approver: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now()
    request = submit()
    ExceptionRequest.objects.filter(pk=request.pk).update(status="approved")
    since = mark()
    with transaction.atomic():
        [grant] = issue_grants(actor=approver, request=request, now=now, not_before=now + starts_in)
    expected = GrantStatus.ACTIVE if not starts_in else GrantStatus.SCHEDULED
    assert grant.status == expected
    assert_signalled(
        since, grant, event=f"grant.{'activated' if not starts_in else 'scheduled'}", action="grant.issued"
    )


# --- Each revocation kind through its real entry point ----------------------------------------


def revoked_body(grant: Grant) -> dict[str, Any]:
    [delivery] = [
        d for d in WebhookDelivery.objects.filter(event="grant.revoked") if d.body["data"]["grant"]["id"] == grant.pk
    ]
    data: dict[str, Any] = delivery.body["data"]
    return data


@pytest.mark.django_db
def test_a_person_revokes_through_the_api_and_the_hook_says_manual(
    hooks: Any, submit: Any, approver: Any, security_officer: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    [grant] = approve_request(actor=approver, request=submit(), now=timezone.now())
    since = mark()
    api = APIClient()
    api.force_authenticate(security_officer)
    response = api.post(f"/api/v1/grants/{grant.pk}/revoke/", {"reason": "Vendor breached."}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "revoked"
    data = assert_signalled(since, grant, event="grant.revoked", action="grant.revoked")
    assert (data["reason_kind"], data["reason"]) == ("manual", "Vendor breached.")
    grant.refresh_from_db()
    assert (grant.revoke_kind, grant.revoked_by) == (RevokeKind.MANUAL, security_officer)
    event = AuditEvent.objects.get(action="grant.revoked", object_id=grant.pk)
    assert event.after["revoke_kind"] == "manual" and event.actor_label == security_officer.get_username()


@pytest.mark.django_db
def test_the_stale_sweep_revokes_and_the_hook_says_stale(
    hooks: Any, submit: Any, approver: Any, team: Any, security_officer: Any, settings: Any
) -> None:
    settings.EGRESS_STALE_DAYS_BY_TIER = {"low": 10, "medium": 10, "high": 10}
    settings.EGRESS_STALE_GRACE_DAYS = 3
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now()
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=30)), now=now - timedelta(days=12))
    gateway, _ = create_gateway(actor=SYSTEM, name="eu-proxy", kind="proxy", environment="staging", owner_team=team)
    for at in (now - timedelta(days=11), now - timedelta(hours=1)):
        report(gateway, flow(grant.identity, "elsewhere.example", 443, "deny", at), now=at)
    assert sweep_stale_grants(now=now).noticed == 1
    since = mark()
    assert sweep_stale_grants(now=now + timedelta(days=3, minutes=1)).revoked == 1
    data = assert_signalled(since, grant, event="grant.revoked", action="grant.revoked")
    assert data["reason_kind"] == "stale" and data["reason"] == "stale"
    grant.refresh_from_db()
    assert (grant.status, grant.revoke_kind, grant.revoked_by) == ("revoked", "stale", None)
    event = AuditEvent.objects.get(action="grant.revoked", object_id=grant.pk)
    assert event.reason.startswith("stale: no traffic observed") and event.actor_kind == "system"
    assert ExceptionRequest.objects.get(pk=grant.request_id).status == "revoked"
    page = Client()
    page.force_login(security_officer)
    assert "Unused (stale sweep)" in page.get(f"/grants/{grant.pk}/").content.decode()


@pytest.mark.django_db
def test_closing_break_glass_revokes_its_grants_and_the_hook_says_breakglass_closed(
    hooks: Any, requester: Any, workload: Any, settings: Any
) -> None:
    secret = enrol_mfa(requester)
    client = signed_in(requester)
    step_up(client, secret)
    assert client.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    opened = list(Grant.objects.filter(request=use.request).order_by("id"))
    assert len(opened) == 2 and {g.status for g in opened} == {"active"}
    # Opening: each grant is issued (audited) and announced as activated, with a priority publish.
    assert AuditEvent.objects.filter(action="grant.issued", object_id__in=[g.pk for g in opened]).count() == 2
    assert WebhookDelivery.objects.filter(event="grant.activated").count() == 2
    since = mark()
    response = client.post(f"/approvals/break-glass/{use.pk}/revoke/", {"reason": "Partner is back."})
    assert response.status_code == 302
    for grant in opened:
        data = assert_signalled(
            since, grant, event="grant.revoked", action="grant.revoked", publish=settings.EGRESS_BREAKGLASS_PUBLISH_KIND
        )
        assert (data["reason_kind"], data["reason"]) == ("breakglass_closed", "Partner is back.")
        grant.refresh_from_db()
        assert (grant.status, grant.revoke_kind, grant.revoked_by) == ("revoked", "breakglass_closed", requester)
    assert AuditEvent.objects.get(action="breakglass.revoked").after["grants_closed"] == 2
    assert not breakglass.any_breakglass_active(now=timezone.now())
    assert ExceptionRequest.objects.get(pk=use.request_id).status == "revoked"


@pytest.mark.django_db
def test_a_renewal_taking_over_revokes_the_old_grant_and_the_hook_says_superseded(
    hooks: Any, submit: Any, approver: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now()
    [old] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=7)), now=now - timedelta(days=6))
    renewal = submit(renews=old, lifetime=timedelta(days=7))
    since = mark()
    [new] = approve_request(actor=approver, request=renewal, now=now)
    data = assert_signalled(since, old, event="grant.revoked", action="grant.superseded")
    assert (data["reason_kind"], data["reason"]) == ("superseded", f"renewed by request #{renewal.pk}")
    old.refresh_from_db()
    assert (old.status, old.revoke_kind, old.expires_at) == ("revoked", "superseded", new.valid_from)
    assert ExceptionRequest.objects.get(pk=old.request_id).status == "expired"


@pytest.mark.django_db
def test_a_renewal_taking_over_later_shortens_the_old_grant_to_end_then(
    hooks: Any, submit: Any, approver: Any, prod_workload: Any, open_prod_window: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now().replace(microsecond=0)
    [old] = approve_request(
        actor=approver,
        request=submit(workload=prod_workload, lifetime=timedelta(days=7)),
        now=now - timedelta(days=6),
    )
    # Production changes now go live only in a daily one-hour window, two to three hours from now.
    open_prod_window.delete()
    opens = (now + timedelta(hours=3)).replace(minute=0, second=0)
    ChangeWindow.objects.create(
        name="daily",
        environments=["prod"],
        rrule="FREQ=DAILY",
        first_start=opens - timedelta(days=30),
        duration=timedelta(hours=1),
        time_zone="UTC",
    )
    renewal = submit(workload=prod_workload, renews=old, lifetime=timedelta(days=7))
    since = mark()
    [new] = approve_request(actor=approver, request=renewal, now=now)
    assert (new.status, new.valid_from) == ("scheduled", opens)
    data = assert_signalled(since, old, event="grant.shortened", action="grant.superseded")
    assert (data["reason_kind"], data["reason"]) == ("superseded", f"renewed by request #{renewal.pk}")
    old.refresh_from_db()
    assert (old.status, old.expires_at) == ("active", opens)
    since = mark()
    assert expire_due_grants(now=opens) == 1  # the old grant ends exactly when the renewal starts
    assert_signalled(since, old, event="grant.expired", action="grant.expired")
    assert activate_due_grants(now=opens) == 1
    new.refresh_from_db()
    assert new.status == "active"


@pytest.mark.django_db
def test_offboarding_a_workload_revokes_its_open_grants_and_the_hook_says_offboarded(
    hooks: Any, submit: Any, approver: Any, requester: Any, security_officer: Any, workload: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    now = timezone.now()
    [live] = approve_request(actor=approver, request=submit(), now=now)
    closed = GrantFactory(workload=workload, request__workload=workload, status="expired")
    with pytest.raises(PermissionDenied, match="security officers or administrators"):
        offboard_workload(actor=requester, workload=workload, reason="Decommissioned.")
    with pytest.raises(ValidationError, match="offboarded"):
        offboard_workload(actor=security_officer, workload=workload, reason=" ")
    since = mark()
    revoked = offboard_workload(actor=security_officer, workload=workload, reason="Service decommissioned.")
    assert [g.pk for g in revoked] == [live.pk]
    data = assert_signalled(since, live, event="grant.revoked", action="grant.revoked")
    assert (data["reason_kind"], data["reason"]) == ("offboarded", "Service decommissioned.")
    closed.refresh_from_db()
    assert closed.status == "expired"  # a closed grant is left as it was
    assert offboard_workload(actor=SYSTEM, workload=workload, reason="Inventory sync: gone.") == []


@pytest.mark.django_db
def test_the_offboarding_command_revokes_through_the_lifecycle_and_names_a_missing_workload(
    hooks: Any, submit: Any, approver: Any, workload: Any, settings: Any
) -> None:
    settings.EGRESS_AUTO_PUBLISH = True
    [live] = approve_request(actor=approver, request=submit(), now=timezone.now())
    with pytest.raises(CommandError, match="No workload has the identity 'nobody/unknown'"):
        call_command("offboard_workload", "--identity", "nobody/unknown", "--reason", "Gone.")
    since = mark()
    out = io.StringIO()
    call_command("offboard_workload", "--identity", workload.identity, "--reason", "Inventory: gone.", stdout=out)
    assert f"1 grant(s) revoked as offboarded (#{live.pk})" in out.getvalue()
    data = assert_signalled(since, live, event="grant.revoked", action="grant.revoked")
    assert (data["reason_kind"], data["reason"]) == ("offboarded", "Inventory: gone.")


@pytest.mark.django_db
def test_revoking_a_closed_grant_is_refused_and_writes_nothing(security_officer: Any) -> None:
    grant = GrantFactory(status="expired")
    since = mark()
    with pytest.raises(TransitionError, match="cannot go from expired to revoked"):
        revoke_grant(actor=security_officer, grant=grant, reason="Too late.")
    assert not AuditEvent.objects.filter(id__gt=since.audit).exists()
    assert not OutboxMessage.objects.filter(kind=PUBLISH).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_expiry_job_and_an_offboarding_at_once_close_each_grant_once(
    hooks: Any, submit: Any, approver: Any, security_officer: Any, workload: Any
) -> None:
    now = timezone.now()
    for i in range(4):
        request = submit(destinations=[{"host": f"h{i}-{j}.example", "port": 443} for j in range(5)])
        approve_request(actor=approver, request=request, now=now - timedelta(days=8))
    ids = set(Grant.objects.values_list("id", flat=True))
    assert len(ids) == 20
    results, errors = _run_together(
        lambda: expire_due_grants(now=now, batch_size=3),
        lambda: offboard_workload(actor=security_officer, workload=workload, reason="Decommissioned."),
    )
    assert not errors, errors
    expired, revoked = (results[0], len(results[1])) if isinstance(results[0], int) else (results[1], len(results[0]))
    assert expired + revoked == 20
    closing = AuditEvent.objects.filter(action__in=["grant.expired", "grant.revoked"], object_type="exceptions.grant")
    assert sorted(int(i) for i in closing.values_list("object_id", flat=True)) == sorted(ids)  # once each
    sent = WebhookDelivery.objects.filter(event__in=["grant.expired", "grant.revoked"])
    assert sorted(d.body["data"]["grant"]["id"] for d in sent) == sorted(ids)
    statuses = dict(Grant.objects.values_list("id", "status"))
    assert all(d.event == f"grant.{statuses[d.body['data']['grant']['id']]}" for d in sent)
    assert verify_chain().ok
