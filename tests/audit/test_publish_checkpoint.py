"""A publish that changed the bundle is followed by an audit checkpoint (one per burst), through the
outbox; every publish attempt is logged."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from approvals.services import approve_request
from audit.checkpoints import CHECKPOINT_KEY
from audit.models import AuditCheckpoint, AuditEvent
from exceptions.models import BundlePublication
from exceptions.services.grants import revoke_grant
from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.relay import relay_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def publishing(policy_repo: Path, settings: Any, tmp_path: Path) -> Path:
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    settings.EGRESS_AUTO_PUBLISH = True
    settings.BUNDLE_PUBLISH_DELAY_SECONDS = 0
    settings.AUDIT_CHECKPOINT_DELAY_SECONDS = 30
    return policy_repo


def _checkpoint_row() -> OutboxMessage | None:
    return OutboxMessage.objects.filter(idempotency_key=CHECKPOINT_KEY).first()


def test_a_burst_of_publishes_is_followed_by_one_checkpoint_covering_them(
    publishing: Path, submit: Any, approver: Any, requester: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress_portal.decisions")
    [grant] = approve_request(actor=approver, request=submit())
    relay_due()  # publishes (and sends the approval's mail)
    first = _checkpoint_row()
    assert first is not None and first.status == OutboxStatus.PENDING
    assert first.available_at > timezone.now() + timedelta(seconds=20)  # not due yet: publishes may follow
    revoke_grant(actor=requester, grant=grant, reason="done")
    relay_due()  # a second publish re-arms the same row, keeping its due time
    assert BundlePublication.objects.filter(status="published").count() == 2
    row = _checkpoint_row()
    assert row is not None and row.pk == first.pk and row.available_at == first.available_at
    assert not AuditCheckpoint.objects.exists()

    relay_due(now=timezone.now() + timedelta(seconds=31))
    [checkpoint] = AuditCheckpoint.objects.all()
    last_publish = AuditEvent.objects.filter(action="bundle.published").order_by("-seq").first()
    assert last_publish is not None and checkpoint.seq >= last_publish.seq
    row.refresh_from_db()
    assert row.status == OutboxStatus.DELIVERED
    logged = [r.msg for r in caplog.records if r.name == "egress_portal.decisions" and isinstance(r.msg, dict)]
    publishes = [line for line in logged if line.get("decision") == "publish"]
    assert [p["outcome"] for p in publishes] == ["published", "published"]
    assert publishes[-1]["commit"] == BundlePublication.objects.first().commit  # type: ignore[union-attr]


def test_a_publish_that_changed_nothing_asks_for_no_checkpoint(publishing: Path) -> None:
    from exceptions.delivery import deliver_publish

    message = OutboxMessage(kind="bundle.publish", payload={"trigger": "test"}, idempotency_key="x")
    deliver_publish(message)  # the first publish of an empty state commits the bundle's skeleton
    OutboxMessage.objects.filter(idempotency_key=CHECKPOINT_KEY).delete()
    deliver_publish(message)
    assert BundlePublication.objects.first().status == "unchanged"  # type: ignore[union-attr]
    assert _checkpoint_row() is None


def test_a_refused_checkpoint_parks_its_row_for_a_person(publishing: Path, submit: Any, approver: Any) -> None:
    from tests.audit.test_chain import _tamper

    approve_request(actor=approver, request=submit())
    relay_due()
    relay_due(now=timezone.now() + timedelta(seconds=31))
    [anchored] = AuditCheckpoint.objects.all()
    approve_request(actor=approver, request=submit(destinations=[{"host": "b.example", "port": 443}]))
    relay_due()
    # Someone edits an event written since the checkpoint before the next one is due.
    _tamper("UPDATE audit_auditevent SET reason = %s WHERE seq = %s", ["rewritten", anchored.seq + 2])
    relay_due(now=timezone.now() + timedelta(seconds=31))
    row = _checkpoint_row()
    assert row is not None and row.status == OutboxStatus.PARKED
    assert "checkpoint refused" in row.last_error and f"#{anchored.seq + 2}" in row.last_error
    assert AuditCheckpoint.objects.count() == 1


def test_the_periodic_and_manual_publish_ask_for_a_checkpoint_too(
    publishing: Path, submit: Any, approver: Any, settings: Any
) -> None:
    from exceptions.services.publications import publish_bundle

    settings.EGRESS_AUTO_PUBLISH = False  # no outbox publish: only the safety net will publish
    approve_request(actor=approver, request=submit())
    assert not OutboxMessage.objects.filter(kind="bundle.publish").exists()
    publication = publish_bundle(trigger="safety net")
    assert publication.status == "published"
    row = _checkpoint_row()
    assert row is not None and row.payload == {"reason": f"publication {publication.pk}"}
