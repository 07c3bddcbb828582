"""Stale revocation at its boundaries: no feed, young grant, traffic, grace, keep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from approvals.services import approve_request
from audit.models import AuditEvent
from audit.verification import verify_chain
from foundation.outbox.models import OutboxMessage
from tests.traffic.conftest import flow, report
from traffic.models import StaleNotice
from traffic.services.stale import keep_grant, sweep_stale_grants

pytestmark = pytest.mark.django_db

WINDOW = 10


@pytest.fixture(autouse=True)
def short_window(settings: Any) -> None:
    settings.EGRESS_STALE_DAYS_BY_TIER = {"low": WINDOW, "medium": WINDOW, "high": WINDOW}
    settings.EGRESS_STALE_GRACE_DAYS = 3
    settings.EGRESS_AUTO_PUBLISH = True


@pytest.fixture
def now() -> Any:
    return timezone.now()


def old_grant(submit: Any, approver: Any, *, age_days: int, now: Any, host: str = "api.partner.example") -> Any:
    [grant] = approve_request(
        actor=approver,
        request=submit(destinations=[{"host": host, "port": 443}], lifetime=timedelta(days=30)),
        now=now - timedelta(days=age_days),
    )
    return grant


def feed(gateway: Any, identity: str, *, since_days: int, now: Any) -> None:
    """The gateway reports on the identity (denied traffic elsewhere) since then and still today."""
    for at in (now - timedelta(days=since_days), now - timedelta(hours=1)):
        report(gateway, flow(identity, "elsewhere.example", 443, "deny", at), now=at)


def test_an_unused_grant_on_a_reported_identity_is_noticed_then_revoked_after_the_grace(
    submit: Any, approver: Any, gateway: Any, now: Any, requester: Any
) -> None:
    grant = old_grant(submit, approver, age_days=WINDOW + 2, now=now)
    feed(gateway, grant.identity, since_days=WINDOW + 1, now=now)

    result = sweep_stale_grants(now=now)
    assert (result.noticed, result.revoked) == (1, 0)
    notice = StaleNotice.objects.get(grant=grant)
    assert notice.status == "noticed" and notice.revoke_after == now + timedelta(days=3)
    assert AuditEvent.objects.filter(action="grant.stale_noticed", object_id=str(grant.pk)).count() == 1
    mail = OutboxMessage.objects.get(kind="mail", idempotency_key__startswith="stale-notice:")
    assert requester.email in mail.payload["to"] and "will be revoked" in mail.payload["subject"]
    assert sweep_stale_grants(now=now + timedelta(days=1)).noticed == 0  # one notice, not one a day

    assert sweep_stale_grants(now=now + timedelta(days=2)).revoked == 0  # still in its grace period
    OutboxMessage.objects.filter(kind="bundle.publish").delete()
    assert sweep_stale_grants(now=now + timedelta(days=3, minutes=1)).revoked == 1
    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.revoke_reason == "stale"
    event = AuditEvent.objects.get(action="grant.revoked", object_id=str(grant.pk))
    assert event.reason.startswith("stale") and event.actor_kind == "system"
    assert OutboxMessage.objects.filter(kind="bundle.publish").exists()  # published
    grant.request.refresh_from_db()
    assert grant.request.status == "revoked"
    assert verify_chain().ok


def test_no_feed_never_revokes(submit: Any, approver: Any, now: Any) -> None:
    old_grant(submit, approver, age_days=WINDOW + 5, now=now)
    assert sweep_stale_grants(now=now).noticed == 0


def test_a_feed_younger_than_the_window_or_gone_silent_does_not_count(
    submit: Any, approver: Any, gateway: Any, now: Any
) -> None:
    grant = old_grant(submit, approver, age_days=WINDOW + 5, now=now)
    feed(gateway, grant.identity, since_days=WINDOW - 1, now=now)  # the gateway started reporting recently
    assert sweep_stale_grants(now=now).noticed == 0
    assert sweep_stale_grants(now=now + timedelta(days=4)).noticed == 0  # ...and has been silent for days


def test_a_grant_younger_than_the_window_is_never_noticed(submit: Any, approver: Any, gateway: Any, now: Any) -> None:
    grant = old_grant(submit, approver, age_days=WINDOW - 1, now=now)
    feed(gateway, grant.identity, since_days=WINDOW + 1, now=now)
    assert sweep_stale_grants(now=now).noticed == 0


def test_traffic_inside_the_window_keeps_a_grant_and_traffic_after_a_notice_withdraws_it(
    submit: Any, approver: Any, gateway: Any, now: Any
) -> None:
    used = old_grant(submit, approver, age_days=WINDOW + 2, now=now, host="used.example")
    unused = old_grant(submit, approver, age_days=WINDOW + 2, now=now, host="unused.example")
    feed(gateway, used.identity, since_days=WINDOW + 1, now=now)
    seen = now - timedelta(days=WINDOW - 1)
    report(gateway, flow(used.identity, "used.example", 443, "allow", seen), now=seen)
    assert sweep_stale_grants(now=now).noticed == 1
    assert StaleNotice.objects.get().grant_id == unused.pk

    later = now + timedelta(days=1)
    report(gateway, flow(unused.identity, "unused.example", 443, "allow", later), now=later)
    result = sweep_stale_grants(now=now + timedelta(days=5))
    assert (result.cleared, result.revoked) == (1, 0)
    unused.refresh_from_db()
    assert unused.status == "active" and StaleNotice.objects.get().status == "cleared"


def test_keep_restarts_the_clock_once_with_a_reason_and_is_audited(
    submit: Any, approver: Any, gateway: Any, now: Any, requester: Any, outsider: Any
) -> None:
    grant = old_grant(submit, approver, age_days=WINDOW + 2, now=now)
    feed(gateway, grant.identity, since_days=WINDOW + 1, now=now)
    sweep_stale_grants(now=now)
    with pytest.raises(ValidationError, match="Say why"):
        keep_grant(actor=requester, grant=grant, reason=" ")
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        keep_grant(actor=outsider, grant=grant, reason="not my team")
    keep_grant(actor=requester, grant=grant, reason="Quarterly batch job; next run in 3 weeks.", now=now)
    event = AuditEvent.objects.get(action="grant.stale_kept")
    assert event.reason == "Quarterly batch job; next run in 3 weeks." and event.actor_id == requester.pk

    assert sweep_stale_grants(now=now + timedelta(days=5)).revoked == 0  # kept: not revoked after the grace
    feed(gateway, grant.identity, since_days=0, now=now + timedelta(days=WINDOW - 1))
    assert sweep_stale_grants(now=now + timedelta(days=WINDOW - 1)).noticed == 0  # the window restarted
    feed(gateway, grant.identity, since_days=0, now=now + timedelta(days=WINDOW + 1))
    assert sweep_stale_grants(now=now + timedelta(days=WINDOW + 1)).noticed == 1  # unused a whole window again
    with pytest.raises(ValidationError, match="kept once already"):
        keep_grant(actor=requester, grant=grant, reason="again", now=now + timedelta(days=WINDOW + 1))


def test_keep_on_the_grant_page(
    client: Any, submit: Any, approver: Any, gateway: Any, now: Any, requester: Any
) -> None:
    grant = old_grant(submit, approver, age_days=WINDOW + 2, now=now)
    feed(gateway, grant.identity, since_days=WINDOW + 1, now=now)
    sweep_stale_grants(now=now)
    client.force_login(requester)
    page = client.get(f"/grants/{grant.pk}/").content.decode()
    assert "will be revoked on" in page and "Keep this grant" in page
    response = client.post(f"/grants/{grant.pk}/keep/", {"reason": "Used by the year-end close."})
    assert response.status_code == 302
    assert StaleNotice.objects.get().status == "kept"
    assert "Keep this grant" not in client.get(f"/grants/{grant.pk}/").content.decode()
