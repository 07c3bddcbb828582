"""The audit viewer: one object's history, team and ticket filters, the chain's status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.services import approve_request
from audit.checkpoints import write_checkpoint
from audit.models import AuditEvent
from audit.selectors import chain_status
from tests.audit.test_chain import _tamper
from tests.factories import WorkloadFactory
from traffic.models import JobState

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved(submit: Any, approver: Any) -> Any:
    request = submit()
    [grant] = approve_request(actor=approver, request=request, reason="fine")
    return request, grant


def test_an_object_history_lists_its_events_in_order_and_links_what_continues_it(
    client: Client, auditor: Any, approved: Any
) -> None:
    request, grant = approved
    client.force_login(auditor)
    page = client.get(f"/audit/objects/exceptions.exceptionrequest/{request.pk}/")
    assert page.status_code == 200
    events = list(page.context["page"].object_list)
    assert [e.action for e in events] == list(
        AuditEvent.objects.filter(object_type="exceptions.exceptionrequest", object_id=str(request.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert events[0].action == "request.submitted" and "request.approved" in [e.action for e in events]
    body = page.content.decode()
    assert f'href="/audit/objects/exceptions.grant/{grant.pk}/"' in body
    assert f'href="/requests/{request.pk}/"' in body
    back = client.get(f"/audit/objects/exceptions.grant/{grant.pk}/").content.decode()
    assert f'href="/audit/objects/exceptions.exceptionrequest/{request.pk}/"' in back
    assert client.get("/audit/objects/exceptions.grant/999999/").status_code == 404


def test_history_is_hidden_from_people_who_may_not_read_the_audit_log(
    client: Client, requester: Any, approved: Any
) -> None:
    request, _ = approved
    client.force_login(requester)
    assert client.get(f"/audit/objects/exceptions.exceptionrequest/{request.pk}/").status_code == 404
    assert "Full audit history" not in client.get(f"/requests/{request.pk}/").content.decode()


def test_request_and_grant_pages_link_an_auditor_to_the_history(client: Client, auditor: Any, approved: Any) -> None:
    request, grant = approved
    client.force_login(auditor)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert f'href="/audit/objects/exceptions.exceptionrequest/{request.pk}/">Full audit history' in page
    page = client.get(f"/grants/{grant.pk}/").content.decode()
    assert f'href="/audit/objects/exceptions.grant/{grant.pk}/">Full audit history' in page
    # Read-only: the auditor is offered no action on the grant.
    assert f'action="/grants/{grant.pk}/revoke/"' not in page
    log = client.get("/audit/").content.decode()
    assert f'href="/audit/objects/exceptions.grant/{grant.pk}/"' in log


def test_audit_log_and_export_filter_by_team_and_ticket(
    client: Client, auditor: Any, submit: Any, approver: Any, other_team: Any, outsider: Any
) -> None:
    ours = submit(ticket_ref="CHG-7")
    [grant] = approve_request(actor=approver, request=ours)
    builder = WorkloadFactory(team=other_team, name="builder", environment="dev")
    theirs = submit(actor=outsider, workload=builder, ticket_ref="OPS-1")
    client.force_login(auditor)

    def objects(query: dict[str, str]) -> set[tuple[str, str]]:
        page = client.get("/audit/", query)
        assert page.status_code == 200
        return {(e.object_type, e.object_id) for e, *_ in page.context["rows"]}

    payments = objects({"team": "payments"})
    assert ("exceptions.exceptionrequest", str(ours.pk)) in payments
    assert ("exceptions.grant", str(grant.pk)) in payments
    assert ("exceptions.exceptionrequest", str(theirs.pk)) not in payments
    assert objects({"ticket": "chg-7"}) == {
        ("exceptions.exceptionrequest", str(ours.pk)),
        ("exceptions.grant", str(grant.pk)),
    }
    assert objects({"ticket": "OPS-1", "team": "payments"}) == set()
    assert client.get("/audit/", {"team": "nobody"}).status_code == 400

    lines = client.get("/audit/export/events.jsonl", {"ticket": "CHG-7"}).getvalue().decode().splitlines()
    header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["filters"] == {"ticket": "CHG-7"}
    assert {(r["object_type"], r["object_id"]) for r in records} == {
        ("exceptions.exceptionrequest", str(ours.pk)),
        ("exceptions.grant", str(grant.pk)),
    }


def test_chain_status_names_the_last_checkpoint_and_a_rewrite_of_it(
    client: Client, auditor: Any, approved: Any, policy_repo: Path, settings: Any, tmp_path: Path
) -> None:
    settings.AUDIT_CHECKPOINT_WORK_DIR = tmp_path / "checkpoint-work"
    assert chain_status().state == "none"
    checkpoint = write_checkpoint()
    assert checkpoint is not None
    status = chain_status()
    assert (status.state, status.checkpoint, status.since_checkpoint) == ("anchored", checkpoint, 1)
    client.force_login(auditor)
    page = client.get("/audit/").content.decode()
    assert "Chain status: anchored" in page and f"#{checkpoint.seq}, signed" in page and checkpoint.path in page

    JobState.objects.create(task="audit.write_checkpoint", last_failure_at=timezone.now(), last_error="boom")
    assert chain_status().state == "refused" and "boom" in chain_status().message
    JobState.objects.filter(pk="audit.write_checkpoint").update(last_success_at=timezone.now())
    assert chain_status().state == "anchored"

    _tamper("UPDATE audit_auditevent SET hash = %s WHERE seq = %s", ["f" * 64, checkpoint.seq])
    status = chain_status()
    assert status.state == "contradicted"
    assert f"Event #{checkpoint.seq} no longer has the hash checkpoint #{checkpoint.seq} signed" in status.message
    page = client.get(f"/audit/objects/audit.auditcheckpoint/{checkpoint.pk}/").content.decode()
    assert "Chain status: contradicted" in page


def test_the_filter_menus_list_each_action_and_object_type_once_in_order(client: Client, auditor: Any) -> None:
    from django.db import transaction

    from audit.selectors import event_choices
    from audit.services import SYSTEM, PendingEvent, record_events

    assert event_choices() == ([], [])
    kinds = [("grant.expired", "exceptions.grant"), ("request.approved", "exceptions.exceptionrequest")]
    kinds += [("a.first", "zz.last"), ("grant.expired", "exceptions.grant"), ("z.last", "aa.first")]
    with transaction.atomic():
        record_events(
            [
                PendingEvent(actor=SYSTEM, action=action, object_type=object_type, object_id=str(i))
                for i, (action, object_type) in enumerate(kinds * 3)
            ]
        )
    assert event_choices() == (
        ["a.first", "grant.expired", "request.approved", "z.last"],
        ["aa.first", "exceptions.exceptionrequest", "exceptions.grant", "zz.last"],
    )
    client.force_login(auditor)
    page = client.get("/audit/").content.decode()
    assert page.count('<option value="request.approved"') == 1 and '<option value="zz.last"' in page


def test_the_whole_log_is_paged_by_the_chain_length_without_counting_every_event(client: Client, auditor: Any) -> None:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from audit.services import SYSTEM, PendingEvent, record_events

    with transaction.atomic():
        record_events(
            [
                PendingEvent(actor=SYSTEM, action="x.first" if i == 0 else "x.later", object_type="t", object_id=str(i))
                for i in range(120)
            ]
        )
    client.force_login(auditor)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/audit/")
    assert response.context["page"].paginator.num_pages == 3
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    last = client.get("/audit/?page=3")
    assert [event.action for event, *_ in last.context["rows"]][-1] == "x.first"
    assert len(last.context["rows"]) == 20
    # A filtered view counts what the filter leaves.
    filtered = client.get("/audit/?action=x.first")
    assert filtered.context["page"].paginator.count == 1
