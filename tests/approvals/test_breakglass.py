"""Break-glass: MFA step-up, an active grant at once, loud, limited, reviewed, and drilled."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals import breakglass
from approvals.models import BreakGlassUse
from audit.models import AuditEvent
from audit.verification import verify_chain
from bundle.emitters.opa import load_data
from exceptions.choices import GrantStatus
from exceptions.models import Grant
from exceptions.services.batches import expire_due_grants
from exceptions.services.grants import revoke_grant
from exceptions.services.publications import publish_bundle
from exceptions.tokens import create_token
from foundation.actors import SESSION, TOKEN, Actor
from foundation.outbox.models import OutboxMessage
from tests.approvals.conftest import enrol_mfa

pytestmark = pytest.mark.django_db

PAGE = "/approvals/break-glass/"
DRILL = "/approvals/break-glass/drill/"
STEP_UP = "/accounts/2fa/reauthenticate/"


def code(secret: str, *, offset: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def wrong_code(secret: str) -> str:
    valid = {code(secret, offset=o) for o in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in valid)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def step_up(client: Client, secret: str) -> None:
    response = client.post(f"{STEP_UP}?next={PAGE}", {"code": code(secret)})
    assert response.status_code == 302, response.content.decode()[:500]


def form(workload: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "workload": workload.pk,
        "destinations": "api.partner.example:443\nstatus.partner.example:443",
        "incident_ref": "INC-4711",
        "reason": "Partner API outage: payments cannot settle without the fallback endpoint.",
        "duration_hours": 4,
        "acknowledged": "on",
    }
    data.update(overrides)
    return data


@pytest.fixture
def mfa_requester(requester: Any) -> tuple[Any, str]:
    return requester, enrol_mfa(requester)


@pytest.fixture
def stepped_up(mfa_requester: tuple[Any, str]) -> Client:
    user, secret = mfa_requester
    client = signed_in(user)
    step_up(client, secret)
    return client


def test_a_user_without_mfa_is_refused_and_sent_to_enrol(requester: Any) -> None:
    response = signed_in(requester).get(PAGE)
    assert response.status_code == 403
    assert "/accounts/2fa/totp/activate/?next=" in response.content.decode()
    assert "no authenticator enrolled" in response.content.decode()


def test_a_signed_in_user_without_a_fresh_code_is_asked_for_one(mfa_requester: tuple[Any, str]) -> None:
    response = signed_in(mfa_requester[0]).get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith(f"{STEP_UP}?next=")


def test_a_step_up_older_than_the_limit_is_asked_again(settings: Any, stepped_up: Client, workload: Any) -> None:
    assert stepped_up.get(PAGE).status_code == 200
    settings.EGRESS_STEP_UP_SECONDS = 1
    time.sleep(1.2)
    response = stepped_up.post(PAGE, form(workload))
    assert response.status_code == 302 and response["Location"].startswith(STEP_UP)
    assert not Grant.objects.exists()


def test_a_wrong_code_is_refused_and_audited(mfa_requester: tuple[Any, str]) -> None:
    user, secret = mfa_requester
    client = signed_in(user)
    response = client.post(f"{STEP_UP}?next={PAGE}", {"code": wrong_code(secret)})
    assert response.status_code == 200 and "Incorrect code" in response.content.decode()
    event = AuditEvent.objects.get(action="mfa.step_up_refused")
    assert (event.actor_id, event.object_type) == (user.pk, "mfa.authenticator")
    assert client.get(PAGE).status_code == 302


def test_repeated_wrong_codes_are_rate_limited_even_for_the_right_code_after(
    mfa_requester: tuple[Any, str], settings: Any
) -> None:
    user, secret = mfa_requester
    client = signed_in(user)
    for _ in range(settings.EGRESS_LOGIN_FAILURES_PER_ACCOUNT):
        client.post(f"{STEP_UP}?next={PAGE}", {"code": wrong_code(secret)})
    response = client.post(f"{STEP_UP}?next={PAGE}", {"code": code(secret)})
    assert response.status_code in {200, 429}
    assert "Too many" in response.content.decode() or response.status_code == 429
    assert client.get(PAGE).status_code == 302


def test_break_glass_opens_an_active_grant_at_once_broadcasts_and_publishes_on_priority(
    stepped_up: Client, requester: Any, workload: Any, security_officer: Any, approver: Any
) -> None:
    before = timezone.now()
    response = stepped_up.post(PAGE, form(workload))
    assert response.status_code == 302, response.content.decode()[:2000]
    use = BreakGlassUse.objects.get()
    grants = list(Grant.objects.order_by("host"))
    assert [g.host for g in grants] == ["api.partner.example", "status.partner.example"]
    assert all(g.status == GrantStatus.ACTIVE and g.breakglass for g in grants)
    assert all(timedelta(hours=4) <= g.expires_at - before < timedelta(hours=4, minutes=1) for g in grants)
    assert use.request is not None and use.request.status == "active"
    [publish] = OutboxMessage.objects.filter(kind="bundle.publish.priority")
    assert publish.payload["trigger"] == f"break-glass #{use.pk}"
    [mail] = OutboxMessage.objects.filter(kind="mail.priority")
    assert mail.payload["to"] == sorted([security_officer.email, approver.email])
    assert "BREAK-GLASS" in mail.payload["subject"] and "INC-4711" in mail.payload["text"]
    [event] = AuditEvent.objects.filter(object_type="approvals.breakglassuse")
    assert event.action == "breakglass.used" and event.actor_id == requester.pk
    assert event.context["breakglass"] is True and event.context["via"] == "session" and "mfa_at" in event.context
    assert event.after["grants"] == [g.pk for g in sorted(grants, key=lambda g: g.pk)]
    assert event.after["incident_ref"] == "INC-4711" and event.reason.startswith("Partner API outage")
    assert verify_chain().ok
    assert 'id="breakglass-banner"' in stepped_up.get("/requests/").content.decode()


def test_the_form_refuses_bad_destinations_and_a_longer_duration_and_writes_nothing(
    stepped_up: Client, workload: Any
) -> None:
    response = stepped_up.post(
        PAGE, form(workload, destinations="localhost:443\napi.partner.example", duration_hours=5)
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Choose between 1 and 4 hours" in page and "Line 1: &#x27;localhost&#x27; names this machine" in page
    assert "Line 2: Enter the port" in page
    assert not BreakGlassUse.objects.exists() and not Grant.objects.exists() and not OutboxMessage.objects.exists()
    response = stepped_up.post(PAGE, form(workload, destinations="api.partner.example", acknowledged=""))
    page = response.content.decode()
    assert response.status_code == 400 and "Line 1: Enter the port" in page and "Confirm that security" in page
    assert not BreakGlassUse.objects.exists()


def test_only_the_users_teams_workloads_unless_security(
    mfa_requester: tuple[Any, str], other_team: Any, security_officer: Any, workload: Any
) -> None:
    from tests.factories import WorkloadFactory

    foreign = WorkloadFactory(team=other_team)
    assert list(breakglass.breakglass_workloads(mfa_requester[0])) == [workload]
    assert set(breakglass.breakglass_workloads(security_officer)) == {workload, foreign}


@pytest.mark.opa
def test_the_published_opa_bundle_allows_the_break_glass_grant(
    policy_repo: Path, stepped_up: Client, workload: Any
) -> None:
    from opa_bindings import OpaEngine

    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    [row] = OutboxMessage.objects.filter(kind="bundle.publish.priority")
    # What the priority relay's handler does with the row (issue 7's deliver_publish).
    publication = publish_bundle(trigger=row.payload["trigger"])
    assert publication.status == "published"
    names = subprocess.run(
        ["git", "--git-dir", str(policy_repo), "ls-tree", "-r", "--name-only", "main", "opa/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    files = {
        name: subprocess.run(
            ["git", "--git-dir", str(policy_repo), "show", f"main:{name}"], capture_output=True, check=True
        ).stdout
        for name in names
    }
    engine = OpaEngine()
    for name, blob in files.items():
        if name.endswith(".rego") and not name.endswith("_test.rego"):
            engine.add_policy(name, blob.decode())
    # The data document as OPA assembles it from the bundle's data files (team fragments included).
    engine.add_data(load_data(files))
    allowed = {"identity": workload.identity, "host": "api.partner.example", "port": 443, "protocol": "tcp"}
    assert engine.eval_document("egress.allow", allowed) is True
    assert engine.eval_document("egress.allow", {**allowed, "host": "evil.example"}) is False


def test_a_break_glass_grant_expires_after_its_duration(stepped_up: Client, workload: Any) -> None:
    assert stepped_up.post(PAGE, form(workload, duration_hours=1)).status_code == 302
    use = BreakGlassUse.objects.get()
    assert expire_due_grants(now=use.created_at + timedelta(minutes=59)) == 0
    assert expire_due_grants(now=use.created_at + timedelta(hours=1)) == 2
    assert set(Grant.objects.values_list("status", flat=True)) == {GrantStatus.EXPIRED}
    assert not breakglass.any_breakglass_active(now=timezone.now())


def test_at_most_two_open_break_glass_uses_per_user(settings: Any, stepped_up: Client, workload: Any) -> None:
    assert settings.EGRESS_BREAKGLASS_MAX_ACTIVE_PER_USER == 2
    for incident in ("INC-1", "INC-2"):
        assert stepped_up.post(PAGE, form(workload, incident_ref=incident)).status_code == 302
    response = stepped_up.post(PAGE, form(workload, incident_ref="INC-3"))
    assert response.status_code == 400 and "already hold 2 open break-glass paths" in response.content.decode()
    assert BreakGlassUse.objects.count() == 2 and Grant.objects.count() == 4
    first = BreakGlassUse.objects.get(incident_ref="INC-1")
    breakglass.revoke_breakglass(actor=first.user, use=first, reason="Partner is back.")
    assert stepped_up.post(PAGE, form(workload, incident_ref="INC-3")).status_code == 302
    # Revoking a use's grants on the grant pages closes the use as well.
    second = BreakGlassUse.objects.get(incident_ref="INC-2")
    for grant in Grant.objects.filter(request=second.request):
        revoke_grant(actor=second.user, grant=grant, reason="Closed from the grant page.")
    assert stepped_up.post(PAGE, form(workload, incident_ref="INC-4")).status_code == 302
    assert stepped_up.post(PAGE, form(workload, incident_ref="INC-5")).status_code == 400


def test_a_drill_runs_the_flow_and_creates_no_grant_and_no_publish(
    stepped_up: Client, workload: Any, security_officer: Any, outsider: Any
) -> None:
    response = stepped_up.get(DRILL)
    assert response.status_code == 200 and "DRILL" in response.content.decode()
    response = stepped_up.post(DRILL, form(workload))
    assert response.status_code == 302
    drill = BreakGlassUse.objects.get()
    assert drill.drill and drill.request is None and drill.expires_at is None and drill.review_due_at is None
    assert drill.flow_seconds >= 0
    assert not Grant.objects.exists()
    assert not OutboxMessage.objects.filter(kind__startswith="bundle.publish").exists()
    [mail] = OutboxMessage.objects.filter(kind="mail.priority")
    assert "DRILL" in mail.payload["subject"] and "DRILL" in mail.payload["text"]
    assert AuditEvent.objects.get(object_type="approvals.breakglassuse").action == "breakglass.drilled"
    page = stepped_up.get("/approvals/break-glass/drills/").content.decode()
    assert workload.team.name in page and "Last practised" in page
    assert 'id="breakglass-banner"' not in page
    assert workload.team.name not in signed_in(outsider).get("/approvals/break-glass/drills/").content.decode()


def test_break_glass_over_the_api_is_refused(requester: Any, workload: Any) -> None:
    enrol_mfa(requester)
    _, key = create_token(actor=requester, user=requester, name="pager", scopes=["requests:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post("/api/v1/break-glass/", {}, format="json")
    assert response.status_code == 403 and "human action" in response.json()["detail"]
    token_actor = Actor(user=requester, via=TOKEN, token_name="pager", mfa_at=timezone.now())
    with pytest.raises(PermissionDenied, match="human action"):
        breakglass.use_breakglass(
            actor=token_actor,
            workload=workload,
            destinations=[{"host": "api.partner.example", "port": 443}],
            incident_ref="INC-1",
            reason="x",
            duration=timedelta(hours=1),
            acknowledged=True,
            flow_started_at=timezone.now(),
        )
    assert not BreakGlassUse.objects.exists()


def test_the_user_or_security_may_revoke_early_and_the_path_closes(
    stepped_up: Client, workload: Any, outsider: Any
) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    with pytest.raises(PermissionDenied):
        breakglass.revoke_breakglass(actor=outsider, use=use, reason="Not mine.")
    response = stepped_up.post(f"/approvals/break-glass/{use.pk}/revoke/", {"reason": "Partner is back."})
    assert response.status_code == 302
    assert set(Grant.objects.values_list("status", flat=True)) == {GrantStatus.REVOKED}
    assert OutboxMessage.objects.filter(kind="bundle.publish.priority").count() == 2
    assert AuditEvent.objects.filter(action="breakglass.revoked").count() == 1
    assert 'id="breakglass-banner"' not in stepped_up.get("/requests/").content.decode()


def test_review_by_another_security_officer_not_by_the_user(
    stepped_up: Client, workload: Any, security_officer: Any, requester: Any
) -> None:
    from django.contrib.auth.models import Group

    from exceptions.access import SECURITY_GROUP

    Group.objects.get(name=SECURITY_GROUP).user_set.add(requester)  # the user is security too
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    assert use.review_due_at is not None and timedelta(hours=23) < use.review_due_at - use.created_at
    with pytest.raises(PermissionDenied, match="your own"):
        breakglass.review_breakglass(actor=requester, use=use, outcome="acknowledged", notes="")
    with pytest.raises(Exception, match="what was misused"):
        breakglass.review_breakglass(actor=security_officer, use=use, outcome="misuse", notes="")
    client = signed_in(security_officer)
    response = client.post(f"/approvals/break-glass/{use.pk}/review/", {"outcome": "acknowledged", "notes": "OK"})
    assert response.status_code == 302
    use.refresh_from_db()
    assert (use.review_outcome, use.reviewed_by) == ("acknowledged", security_officer)
    assert AuditEvent.objects.get(action="breakglass.reviewed").after == {"outcome": "acknowledged", "late": False}


def test_unreviewed_uses_are_reminded_until_reviewed(
    settings: Any, stepped_up: Client, workload: Any, security_officer: Any
) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    hours = settings.EGRESS_BREAKGLASS_REMINDER_HOURS
    assert breakglass.remind_unreviewed(now=use.created_at + timedelta(minutes=5)) == 0
    assert breakglass.remind_unreviewed(now=use.created_at + timedelta(hours=hours)) == 1
    assert breakglass.remind_unreviewed(now=use.created_at + timedelta(hours=hours, minutes=5)) == 0
    assert breakglass.remind_unreviewed(now=use.created_at + timedelta(hours=25)) == 1
    reminders = [
        m.payload for m in OutboxMessage.objects.order_by("id") if "awaits review" in m.payload.get("subject", "")
    ]
    assert len(reminders) == 2 and "OVERDUE" not in reminders[0]["text"] and "OVERDUE" in reminders[1]["text"]
    breakglass.review_breakglass(actor=security_officer, use=use, outcome="acknowledged", notes="")
    assert breakglass.remind_unreviewed(now=use.created_at + timedelta(hours=40)) == 0


def test_approvers_and_security_must_enrol_when_the_setting_says_so(
    settings: Any, approver: Any, requester: Any
) -> None:
    settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS = True
    response = signed_in(approver).get("/approvals/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/totp/activate/")
    assert signed_in(approver).post("/approvals/1/approve/", {}).status_code == 403
    assert signed_in(requester).get("/requests/").status_code == 200
    enrol_mfa(approver)
    assert signed_in(approver).get("/approvals/").status_code == 200


def test_unreviewed_and_overdue_uses_appear_on_the_approver_dashboard(
    stepped_up: Client, workload: Any, security_officer: Any, approver: Any
) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    page = signed_in(security_officer).get("/approvals/").content.decode()
    assert "Break-glass uses awaiting review (1)" in page and f"/approvals/break-glass/{use.pk}/" in page
    assert "overdue</strong>" not in page
    BreakGlassUse.objects.filter(pk=use.pk).update(review_due_at=timezone.now() - timedelta(minutes=1))
    assert "overdue</strong>" in signed_in(approver).get("/approvals/").content.decode()
    breakglass.review_breakglass(actor=security_officer, use=use, outcome="acknowledged", notes="")
    assert "awaiting review" not in signed_in(security_officer).get("/approvals/").content.decode()


def test_metrics_count_open_unreviewed_and_overdue_uses(stepped_up: Client, workload: Any) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    BreakGlassUse.objects.update(review_due_at=timezone.now() - timedelta(minutes=1))
    body = Client().get("/metrics").content.decode()
    for line in (
        "egress_breakglass_active 1.0",
        "egress_breakglass_unreviewed 1.0",
        "egress_breakglass_review_overdue 1.0",
    ):
        assert line in body


def test_the_priority_relay_delivers_the_broadcast_and_the_publish(
    policy_repo: Path, stepped_up: Client, workload: Any, security_officer: Any, mailoutbox: Any
) -> None:
    from exceptions.models import BundlePublication
    from foundation.outbox.relay import relay_due

    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    relay_due(queue="default")
    assert mailoutbox == [] and not BundlePublication.objects.exists()
    relay_due(queue="priority")
    [mail] = mailoutbox
    assert mail.to == [security_officer.email] and "BREAK-GLASS" in mail.subject
    assert BundlePublication.objects.get().status == "published"
    # Left pending: only the audit checkpoint the publish asked for (due a little later, on `default`).
    pending = OutboxMessage.objects.exclude(status="delivered")
    assert list(pending.values_list("kind", "status")) == [("audit.checkpoint", "pending")]


def test_a_use_is_hidden_from_people_outside_its_team(stepped_up: Client, workload: Any, outsider: Any) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    assert stepped_up.get(f"/approvals/break-glass/{use.pk}/").status_code == 200
    assert signed_in(outsider).get(f"/approvals/break-glass/{use.pk}/").status_code == 404
    assert signed_in(outsider).post(f"/approvals/break-glass/{use.pk}/revoke/", {"reason": "x"}).status_code == 404


def test_drills_are_throttled_per_workload_with_a_clear_refusal(
    settings: Any, stepped_up: Client, mfa_requester: tuple[Any, str], workload: Any, security_officer: Any
) -> None:
    settings.EGRESS_BREAKGLASS_DRILL_INTERVAL_MINUTES = 30
    assert stepped_up.post(DRILL, form(workload)).status_code == 302
    again = stepped_up.post(DRILL, form(workload, incident_ref="INC-4712"))
    assert again.status_code == 400
    assert f"{workload.name} was drilled at" in again.content.decode()
    assert "one drill per workload every 30 min" in again.content.decode()
    user, _ = mfa_requester
    with pytest.raises(ValidationError, match="one drill per workload every 30 min"):
        breakglass.use_breakglass(
            actor=Actor(user=user, via=SESSION, mfa_at=timezone.now()),
            workload=workload,
            destinations=[{"host": "api.partner.example", "port": 443}],
            incident_ref="INC-4713",
            reason="Practice.",
            duration=timedelta(hours=1),
            acknowledged=True,
            flow_started_at=timezone.now(),
            drill=True,
        )
    assert BreakGlassUse.objects.filter(drill=True).count() == 1
    assert OutboxMessage.objects.filter(kind="mail.priority").count() == 1
    # Once the interval has passed, the next drill runs; a real break-glass is never throttled.
    BreakGlassUse.objects.update(created_at=timezone.now() - timedelta(minutes=31))
    assert stepped_up.post(DRILL, form(workload, incident_ref="INC-4714")).status_code == 302
    assert stepped_up.post(PAGE, form(workload)).status_code == 302


def test_an_early_revoke_is_broadcast_on_the_priority_mail_kind_like_the_opening(
    stepped_up: Client, workload: Any, security_officer: Any, approver: Any
) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    [opening] = OutboxMessage.objects.filter(kind="mail.priority")
    response = stepped_up.post(f"/approvals/break-glass/{use.pk}/revoke/", {"reason": "Partner is back."})
    assert response.status_code == 302
    [closing] = OutboxMessage.objects.filter(kind="mail.priority").exclude(pk=opening.pk)
    assert closing.payload["to"] == opening.payload["to"] == sorted([security_officer.email, approver.email])
    assert "BREAK-GLASS CLOSED" in closing.payload["subject"] and "INC-4711" in closing.payload["subject"]
    assert "Partner is back." in closing.payload["text"] and "Grants closed: 2" in closing.payload["text"]
