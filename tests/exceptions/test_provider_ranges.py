"""Keeping provider range versions: audited, republished, never for an unchanged token."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from audit.services import SYSTEM
from exceptions.models import ProviderRangeSet
from exceptions.services.provider_ranges import sync_provider_ranges
from foundation.outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db
AWS = Path(__file__).parent.parent / "bundle" / "provider_files" / "ip-ranges.json"


def test_a_new_version_is_kept_audited_and_republished() -> None:
    version = sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(AWS))
    assert version is not None and version.sync_token == "1732800000"
    assert version.services["S3/eu-west-1"][0] == "3.5.64.0/21"
    [event] = AuditEvent.objects.filter(action="provider_ranges.synced")
    assert event.object_id == str(version.pk) and event.after["changed_count"] == 3
    [message] = OutboxMessage.objects.filter(kind="bundle.publish")
    assert message.payload["trigger"] == "aws ranges 1732800000"


def test_the_same_sync_token_changes_nothing() -> None:
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(AWS))
    assert sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(AWS)) is None
    assert ProviderRangeSet.objects.count() == 1
    assert AuditEvent.objects.filter(action="provider_ranges.synced").count() == 1


def test_a_range_change_names_the_services_that_moved(tmp_path: Path) -> None:
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(AWS))
    document = json.loads(AWS.read_text())
    document["syncToken"] = "1732900000"
    document["prefixes"].append({"ip_prefix": "3.5.72.0/23", "region": "eu-west-1", "service": "S3"})
    newer = tmp_path / "ip-ranges.json"
    newer.write_text(json.dumps(document))
    version = sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(newer))
    assert version is not None
    event = AuditEvent.objects.filter(action="provider_ranges.synced").order_by("-seq").first()
    assert event is not None
    assert event.before == {"sync_token": "1732800000", "published": "2026-11-28-10-00-00"}
    assert event.after["changed_services"] == ["S3/eu-west-1"]
    assert OutboxMessage.objects.filter(kind="bundle.publish").count() == 2


def test_a_bad_file_writes_nothing_and_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "ip-ranges.json"
    entry = {"ip_prefix": "300.1.1.0/24", "region": "r", "service": "S3"}
    broken.write_text(json.dumps({"syncToken": "1", "createDate": "x", "prefixes": [entry]}))
    with pytest.raises(ValidationError, match="is not a network address"):
        sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(broken))
    with pytest.raises(ValidationError, match="cannot read the range file"):
        sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(tmp_path / "missing.json"))
    assert not ProviderRangeSet.objects.exists() and not AuditEvent.objects.exists()


def test_the_command_loads_from_a_path_and_reports_errors_plainly(tmp_path: Path) -> None:
    out = StringIO()
    call_command("sync_provider_ranges", "aws", "--source", str(AWS), stdout=out)
    assert "stored ranges 1732800000" in out.getvalue()
    with pytest.raises(CommandError, match="cannot read"):
        call_command("sync_provider_ranges", "google", "--source", str(tmp_path / "nope.json"))


def test_a_range_change_reaches_the_bundle_without_a_new_approval(tmp_path: Path, submit: Any, approver: Any) -> None:
    from approvals.services import approve_request
    from exceptions.models import Grant
    from exceptions.services.publications import current_bundle

    [grant] = approve_request(actor=approver, request=submit())
    # A provider-service grant, as the approval of a "provider service" destination records it.
    Grant.objects.filter(pk=grant.pk).update(host="aws:S3/eu-west-1", service="aws:S3/eu-west-1")
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(AWS))
    before = current_bundle()
    path = "teams/payments/cilium/payments/egress-checkout-api-ranges.yaml"
    assert "3.5.64.0/21" in before.files[path].decode()
    document = json.loads(AWS.read_text())
    document["syncToken"] = "1732900000"
    document["prefixes"].append({"ip_prefix": "3.5.72.0/23", "region": "eu-west-1", "service": "S3"})
    newer = tmp_path / "ip-ranges.json"
    newer.write_text(json.dumps(document))
    sync_provider_ranges(actor=SYSTEM, provider="aws", source=str(newer))
    after = current_bundle()
    assert "3.5.72.0/23" in after.files[path].decode()
    assert json.loads(after.files["MANIFEST.json"])["provider_ranges"]["aws"]["sync_token"] == "1732900000"
    assert Grant.objects.count() == 1  # no new grant, no new approval


def test_each_provider_sync_is_a_seeded_beat_schedule() -> None:
    from django_celery_beat.models import PeriodicTask

    from exceptions.tasks import sync_provider_ranges as task

    schedules = {t.name: t for t in PeriodicTask.objects.filter(task=task.name).select_related("crontab")}
    assert set(schedules) == {"sync-provider-ranges-aws", "sync-provider-ranges-google"}
    assert json.loads(schedules["sync-provider-ranges-aws"].kwargs) == {"provider": "aws"}
    assert schedules["sync-provider-ranges-google"].crontab is not None


def test_the_scheduled_task_syncs_the_configured_source(settings: Any) -> None:
    from exceptions.tasks import sync_provider_ranges as task

    google = AWS.parent / "cloud.json"
    settings.EGRESS_PROVIDER_RANGE_SOURCES = f"aws={AWS}, google={google}"
    assert task.apply(kwargs={"provider": "aws"}).get() == "aws: stored 1732800000"
    assert task.apply(kwargs={"provider": "google"}).get().startswith("google: stored ")
    assert task.apply(kwargs={"provider": "aws"}).get() == "aws: unchanged"
    assert set(ProviderRangeSet.objects.values_list("provider", flat=True)) == {"aws", "google"}
    event = AuditEvent.objects.filter(action="provider_ranges.synced").order_by("seq").first()
    assert event is not None and event.actor_kind == "system" and event.request_id.startswith("task-")
    settings.EGRESS_PROVIDER_RANGE_SOURCES = ""
    assert task.apply(kwargs={"provider": "aws"}).get() == "aws: no source configured"
