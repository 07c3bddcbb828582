"""Safe retries and sync: Idempotency-Key, Location, ETag, filters, cursor paging, browser actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from exceptions.models import ExceptionRequest, IdempotencyRecord, RequestComment
from exceptions.tokens import create_token
from tests.api_problems import field_errors, problem
from tests.exceptions.test_tokens import payload
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.django_db


def session(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bearer(user: Any, name: str = "jira") -> APIClient:
    _, key = create_token(actor=user, user=user, name=name, scopes=["requests:read", "requests:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_replayed_create_returns_the_first_answer_and_files_once(requester: Any, workload: Any) -> None:
    client = bearer(requester)
    first = client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="chg-42-1")
    again = client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="chg-42-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert ExceptionRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="request.submitted").count() == 1


def test_the_same_key_with_another_body_is_a_409(requester: Any, workload: Any) -> None:
    client = bearer(requester)
    client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    changed = {**payload(workload), "lifetime_hours": 48}
    response = client.post("/api/v1/requests/", changed, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert problem(response, 409)["code"] == "idempotency_conflict"
    assert ExceptionRequest.objects.count() == 1


def test_keys_are_per_token(requester: Any, workload: Any) -> None:
    bearer(requester, "jira").post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = bearer(requester, "ci").post(
        "/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert other.status_code == 201 and not other.has_header("Idempotent-Replayed")
    assert ExceptionRequest.objects.count() == 2


def test_a_key_older_than_the_window_runs_again(requester: Any, workload: Any) -> None:
    client = bearer(requester)
    client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 201 and ExceptionRequest.objects.count() == 2


def test_a_refused_call_releases_its_key(requester: Any, workload: Any) -> None:
    client = bearer(requester)
    bad = {**payload(workload), "lifetime_hours": 0}
    assert client.post("/api/v1/requests/", bad, format="json", HTTP_IDEMPOTENCY_KEY="fix").status_code == 400
    fixed = client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="fix")
    assert fixed.status_code == 201


def test_a_malformed_key_is_named(requester: Any, workload: Any) -> None:
    response = bearer(requester).post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="")
    assert "Idempotency-Key" in field_errors(response)


def test_a_created_request_has_a_location_that_reads_it(requester: Any, workload: Any) -> None:
    client = session(requester)
    created = client.post("/api/v1/requests/", payload(workload), format="json")
    assert created["Location"] == f"/api/v1/requests/{created.json()['id']}/"
    assert client.get(created["Location"]).json()["id"] == created.json()["id"]


def test_etag_answers_304_until_the_request_changes(requester: Any, workload: Any) -> None:
    client = session(requester)
    pk = client.post("/api/v1/requests/", payload(workload), format="json").json()["id"]
    first = client.get(f"/api/v1/requests/{pk}/")
    tag = first["ETag"]
    unchanged = client.get(f"/api/v1/requests/{pk}/", HTTP_IF_NONE_MATCH=tag)
    assert unchanged.status_code == 304 and unchanged["ETag"] == tag and not unchanged.content
    client.post(f"/api/v1/requests/{pk}/comments/", {"body": "Partner confirmed the port."}, format="json")
    stale = client.post(f"/api/v1/requests/{pk}/cancel/", {}, format="json", HTTP_IF_MATCH='"not-it"')
    assert problem(stale, 412)["code"] == "precondition_failed"
    assert client.post(f"/api/v1/requests/{pk}/cancel/", {}, format="json", HTTP_IF_MATCH=tag).status_code == 200
    changed = client.get(f"/api/v1/requests/{pk}/", HTTP_IF_NONE_MATCH=tag)
    assert changed.status_code == 200 and changed["ETag"] != tag


def _file(client: APIClient, workload: Any, **extra: Any) -> int:
    response = client.post("/api/v1/requests/", {**payload(workload), **extra}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def test_list_filters(requester: Any, teammate: Any, team: Any, workload: Any) -> None:
    prod = WorkloadFactory(team=team, name="ledger", environment="prod")
    mine = _file(session(requester), workload, ticket_ref="CHG-1")
    theirs = _file(session(teammate), workload, ticket_ref="CHG-2")
    in_prod = _file(session(requester), prod, ticket_ref="CHG-3", lifetime_hours=24)
    client = session(requester)

    def ids(**query: Any) -> list[int]:
        response = client.get("/api/v1/requests/", query)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(ticket_ref="CHG-2") == [theirs]
    assert ids(requester="dave") == [theirs] and ids(requester="dave@example.org") == [theirs]
    assert ids(environment="prod") == [in_prod]
    assert ids(workload=workload.pk) == [theirs, mine]
    assert set(ids(team="payments")) == {mine, theirs, in_prod} and ids(team="platform") == []
    assert ids(status="pending", ticket_ref="CHG-1") == [mine]
    ExceptionRequest.objects.filter(pk=mine).update(updated_at=timezone.now() - timedelta(days=2))
    ExceptionRequest.objects.exclude(pk=mine).update(updated_at=timezone.now() - timedelta(days=5))
    since = (timezone.now() - timedelta(days=3)).isoformat()
    assert ids(updated_since=since) == [mine]
    assert "status" in field_errors(client.get("/api/v1/requests/", {"status": "approvedish"}))
    assert "updated_since" in field_errors(client.get("/api/v1/requests/", {"updated_since": "yesterday"}))


def test_cursor_pages_walk_every_request_once_in_a_stable_order(requester: Any, workload: Any) -> None:
    client = session(requester)
    filed = {_file(client, workload) for _ in range(5)}
    seen: list[int] = []
    url: str | None = "/api/v1/requests/?limit=2&ordering=updated_at"
    while url:
        page = client.get(url).json()
        assert len(page["results"]) <= 2
        seen.extend(row["id"] for row in page["results"])
        url = page["next"]
    assert len(seen) == len(set(seen)) == 5 and set(seen) == filed
    assert seen == sorted(seen)  # oldest change first, ties by id


def test_submit_a_draft(requester: Any, workload: Any) -> None:
    client = session(requester)
    pk = _file(client, workload, draft=True)
    response = client.post(f"/api/v1/requests/{pk}/submit/")
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert problem(client.post(f"/api/v1/requests/{pk}/submit/"), 409)["code"] == "illegal_transition"


def test_comment_is_recorded_with_an_audit_event(requester: Any, approver: Any, outsider: Any, workload: Any) -> None:
    pk = _file(session(requester), workload)
    created = session(approver).post(f"/api/v1/requests/{pk}/comments/", {"body": " Which port? "}, format="json")
    assert created.status_code == 201 and created.json()["author"] == "bob" and created.json()["body"] == "Which port?"
    assert created["Location"] == f"/api/v1/requests/{pk}/comments/"
    comment = RequestComment.objects.get()
    event = AuditEvent.objects.get(action="request.commented")
    assert event.object_id == str(pk) and event.after["comment"] == comment.pk and event.actor_id == approver.pk
    assert [c["body"] for c in session(requester).get(f"/api/v1/requests/{pk}/comments/").json()["results"]] == [
        "Which port?"
    ]
    assert session(outsider).post(f"/api/v1/requests/{pk}/comments/", {"body": "x"}, format="json").status_code == 404
    assert "body" in field_errors(session(requester).post(f"/api/v1/requests/{pk}/comments/", {"body": " "}))


def test_renew_a_grant_files_a_linked_request(requester: Any, approver: Any, workload: Any) -> None:
    pk = _file(session(requester), workload)
    grant_id = session(approver).post(f"/api/v1/requests/{pk}/approve/", {}, format="json").json()["grants"][0]["id"]
    body = {"justification": "The nightly settlement still runs against the partner API.", "lifetime_hours": 24}
    renewal = session(requester).post(f"/api/v1/grants/{grant_id}/renew/", body, format="json")
    assert renewal.status_code == 201, renewal.content
    created = ExceptionRequest.objects.get(pk=renewal.json()["id"])
    assert created.renews_id == grant_id and created.ticket_ref == "CHG-42"
    assert [(d.host, d.port) for d in created.destinations.all()] == [("api.partner.example", 443)]
    assert renewal["Location"] == f"/api/v1/requests/{created.pk}/"


def test_outcomes_older_than_the_window_are_purged(requester: Any, workload: Any) -> None:
    from webhooks.tasks import purge_idempotency_records

    client = bearer(requester)
    client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="a")
    client.post("/api/v1/requests/", payload(workload), format="json", HTTP_IDEMPOTENCY_KEY="b")
    IdempotencyRecord.objects.filter(key="a").update(created_at=timezone.now() - timedelta(hours=25))
    assert purge_idempotency_records.apply().get() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["b"]
