"""Change windows across DST, freezes, scheduling and activation by the beat job."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from approvals import reference, tasks
from approvals.services import activate_due_requests, approve_request
from approvals.windows import Calendar
from audit.models import AuditEvent
from audit.services import SYSTEM
from exceptions.models import Grant
from foundation.outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db


def window(name: str, rrule: str, local: datetime, tz: str, hours: int = 2, envs: tuple[str, ...] = ("prod",)) -> Any:
    return reference.save_change_window(
        actor=SYSTEM,
        name=name,
        environments=list(envs),
        rrule=rrule,
        first_start_local=local,
        duration=timedelta(hours=hours),
        time_zone=tz,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Tuesdays 02:00 Europe/Berlin: 01:00 UTC in winter, 00:00 UTC in summer.
        (utc(2026, 3, 25), utc(2026, 3, 31, 0)),  # DST began Sun 29 March
        (utc(2026, 3, 18), utc(2026, 3, 24, 1)),
        (utc(2026, 10, 21), utc(2026, 10, 27, 1)),  # DST ended Sun 25 October
        (utc(2026, 10, 14), utc(2026, 10, 20, 0)),
        (utc(2026, 3, 24, 1, 30), utc(2026, 3, 24, 1, 30)),  # inside an open window: now
    ],
)
def test_berlin_weekly_window_keeps_local_time_across_dst(after: datetime, expected: datetime) -> None:
    tue = window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin")
    assert Calendar([tue], []).next_window("prod", after).at == expected


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (utc(2026, 3, 7, 12), utc(2026, 3, 8, 6, 30)),  # 01:30 EST on the day DST begins (02:00)
        (utc(2026, 3, 8, 12), utc(2026, 3, 9, 5, 30)),  # 01:30 EDT the day after
        (utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),  # first 01:30 (EDT) on the day DST ends
        (utc(2026, 11, 1, 12), utc(2026, 11, 2, 6, 30)),  # 01:30 EST afterwards
    ],
)
def test_new_york_daily_window_across_dst(after: datetime, expected: datetime) -> None:
    daily = window("nightly", "FREQ=DAILY", datetime(2026, 1, 1, 1, 30), "America/New_York", hours=1)
    assert Calendar([daily], []).next_window("prod", after).at == expected


def test_a_freeze_moves_go_live_to_the_next_window_outside_it() -> None:
    tue = window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin")
    freeze = reference.declare_freeze(
        actor=SYSTEM, starts_at=utc(2026, 3, 30), ends_at=utc(2026, 4, 1), environments=["prod"], reason="Quarter end"
    )
    go_live = Calendar([tue], [freeze]).next_window("prod", utc(2026, 3, 25))
    assert go_live.at == utc(2026, 4, 7, 0)
    assert "Tue 2026-04-07 02:00 Europe/Berlin" in go_live.reason
    assert AuditEvent.objects.filter(action="freeze.declared").count() == 1


def test_a_freeze_ending_inside_a_window_opens_at_its_end() -> None:
    tue = window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin", hours=4)
    freeze = reference.declare_freeze(
        actor=SYSTEM,
        starts_at=utc(2026, 3, 30),
        ends_at=utc(2026, 3, 31, 1),
        environments=["prod"],
        reason="Release train",
    )
    go_live = Calendar([tue], [freeze]).next_window("prod", utc(2026, 3, 25))
    assert go_live.at == utc(2026, 3, 31, 1)
    assert "freeze until Tue 2026-03-31 03:00 Europe/Berlin: Release train" in go_live.reason


def test_a_freeze_of_another_environment_does_not_apply() -> None:
    tue = window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin")
    freeze = reference.declare_freeze(
        actor=SYSTEM, starts_at=utc(2026, 3, 30), ends_at=utc(2026, 4, 1), environments=["staging"], reason="x"
    )
    assert Calendar([tue], [freeze]).next_window("prod", utc(2026, 3, 25)).at == utc(2026, 3, 31, 0)


def test_no_window_means_no_go_live_and_says_so() -> None:
    go_live = Calendar([], []).next_window("prod", utc(2026, 3, 25))
    assert go_live.at is None and "no change window for prod" in go_live.reason


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rrule": "EVERY TUESDAY"}, "rrule"),
        ({"rrule": "FREQ=WEEKLY;DTSTART=20260101T000000"}, "rrule"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"environments": ["moon"]}, "environments"),
        ({"duration": timedelta(0)}, "duration"),
    ],
)
def test_bad_windows_are_refused_with_the_field(kwargs: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {
        "actor": SYSTEM,
        "name": "w",
        "environments": ["prod"],
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
        "first_start_local": datetime(2026, 1, 6, 2, 0),
        "duration": timedelta(hours=2),
        "time_zone": "Europe/Berlin",
    }
    values.update(kwargs)
    with pytest.raises(ValidationError) as caught:
        reference.save_change_window(**values)
    assert field in caught.value.message_dict


def test_approved_production_request_is_scheduled_for_the_window_and_lifetime_starts_then(
    submit: Any, approver: Any, prod_workload: Any
) -> None:
    window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin")
    now = utc(2026, 3, 25, 9)
    request = submit(workload=prod_workload, lifetime=timedelta(days=5), now=now)
    grants = approve_request(actor=approver, request=request, now=now)
    assert [(g.status, g.valid_from, g.expires_at) for g in grants] == [
        ("scheduled", utc(2026, 3, 31, 0), utc(2026, 4, 5, 0))
    ]
    request.refresh_from_db()
    assert request.status == "approved"
    mail = OutboxMessage.objects.get(idempotency_key=f"request-scheduled:{request.pk}:r1")
    assert "Tue 2026-03-31 02:00 Europe/Berlin" in mail.payload["text"]
    # Due, but a freeze declared since: the job moves it (and its whole lifetime) past the freeze.
    reference.declare_freeze(
        actor=SYSTEM, starts_at=utc(2026, 3, 30), ends_at=utc(2026, 4, 2), environments=["prod"], reason="Incident"
    )
    assert activate_due_requests(now=utc(2026, 3, 31, 0, 1)) == 0
    grant = Grant.objects.get()
    assert (grant.status, grant.valid_from, grant.expires_at) == ("scheduled", utc(2026, 4, 7, 0), utc(2026, 4, 12, 0))
    assert AuditEvent.objects.filter(action="request.rescheduled").count() == 1
    # The grant's window moved through the lifecycle writer, with its own audit event.
    [moved] = AuditEvent.objects.filter(action="grant.rescheduled", object_id=str(grant.pk))
    assert moved.before["valid_from"] != moved.after["valid_from"] and moved.reason
    assert activate_due_requests(now=utc(2026, 4, 7, 0, 1)) == 1
    grant.refresh_from_db()
    request.refresh_from_db()
    assert (grant.status, request.status) == ("active", "active")
    assert OutboxMessage.objects.filter(idempotency_key=f"request-activated:{request.pk}:r1").exists()


@pytest.mark.celery_worker
@pytest.mark.redis
@pytest.mark.postgres
def test_beat_job_on_a_real_worker_activates_at_the_window(
    celery_worker: Any, submit: Any, approver: Any, prod_workload: Any
) -> None:
    window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin")
    now = utc(2026, 3, 25, 9)
    request = submit(workload=prod_workload, now=now)
    [grant] = approve_request(actor=approver, request=request, now=now)
    assert grant.status == "scheduled"
    assert tasks.activate_due_requests.delay(utc(2026, 3, 30).isoformat()).get(timeout=60) == 0
    assert tasks.activate_due_requests.delay(utc(2026, 3, 31, 0, 5).isoformat()).get(timeout=60) == 1
    grant.refresh_from_db()
    request.refresh_from_db()
    assert (grant.status, request.status) == ("active", "active")
    assert AuditEvent.objects.filter(action="grant.activated", actor_kind="system").count() == 1


def test_request_form_preview_names_the_rule_and_when_it_would_go_live(
    client: Any, requester: Any, prod_workload: Any
) -> None:
    # The page asks the real clock: the window is on a weekday three days from today, so it is never open now.
    weekday = (datetime.now(ZoneInfo("Europe/Berlin")).weekday() + 3) % 7
    byday = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[weekday]
    window("tue", f"FREQ=WEEKLY;BYDAY={byday}", datetime(2026, 1, 5, 2, 0) + timedelta(days=weekday), "Europe/Berlin")
    client.force_login(requester)
    body = client.get(
        "/requests/preview/",
        {
            "workload": prod_workload.pk,
            "purpose": "partner_api",
            "data_class": "confidential",
            "lifetime_value": 3,
            "lifetime_unit": "days",
            "host": ["api.partner.example"],
            "port": ["443"],
        },
    ).json()
    assert body["approval"]["rule"] == "high-risk-production"
    assert "security-officers from outside the requesting team, MFA at the decision" in body["approval"]["needs"]
    assert body["approval"]["go_live"]["window"] == "tue"
    assert "Europe/Berlin" in body["approval"]["go_live"]["reason"]
    # The time as the pages write it, for the script to show as is (not the browser's locale, without a zone).
    assert re.fullmatch(r"\w{3} \d{4}-\d\d-\d\d \d\d:\d\d UTC", body["approval"]["go_live"]["at_display"])


def test_the_approval_preview_shows_what_approving_publishes_now_and_what_changes_at_go_live(
    submit: Any, approver: Any, prod_workload: Any
) -> None:
    from approvals.access import approval_state
    from approvals.selectors import request_page
    from approvals.services import go_live_for
    from bundle.compiler import compile_bundle
    from exceptions.approval_preview import IGNORED, preview_approval
    from exceptions.selectors import bundle_options, bundle_records

    window("tue", "FREQ=WEEKLY;BYDAY=TU", datetime(2026, 1, 6, 2, 0), "Europe/Berlin")
    now = utc(2026, 3, 25, 9)
    request = submit(workload=prod_workload, lifetime=timedelta(days=5), now=now)
    go_live = go_live_for(request, now=now, state=approval_state(request))
    preview = preview_approval(request, now=now, not_before=go_live.at)
    page = request_page(approver, request, now=now)

    def files() -> dict[str, bytes]:
        return compile_bundle(bundle_records(), now=now, options=bundle_options()).files

    before = files()
    approve_request(actor=approver, request=request, now=now)
    after = files()
    published = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)} - IGNORED
    # Honest: the files the preview says change on approval are the ones the publish changes.
    assert {d.path for d in preview.on_approval} == published

    def engines(paths: set[str]) -> set[str]:
        return {part for path in paths for part in path.split("/")} & {"opa", "cilium", "istio"}

    assert engines(published) == {"opa"}, published
    assert '"valid_from_ns"' in "".join(d.diff for d in preview.on_approval)
    # The engines that carry only valid grants change at go-live, and the page labels it so.
    assert preview.go_live == utc(2026, 3, 31, 0)
    live_paths = {d.path for d in preview.at_go_live}
    assert engines(live_paths) >= {"cilium", "istio"}, live_paths
    assert page["preview_go_live"] == preview.go_live
    assert [path for path, _ in page["preview_live_files"]] == [d.path for d in preview.at_go_live]
