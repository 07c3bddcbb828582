"""The audit log page: filters, links to the objects, times with their zone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_audit_log_filters_by_actor_action_object_type_and_dates(
    client: Client, submit: Any, auditor: Any, requester: Any
) -> None:
    request = submit()
    client.force_login(auditor)
    page = client.get("/audit/", {"actor": "ALICE", "action": "request.submitted"})
    assert page.status_code == 200
    rows = page.context["rows"]
    assert [event.object_id for event, *_ in rows] == [str(request.pk)]
    assert client.get("/audit/", {"actor": "nobody"}).context["rows"] == []
    assert client.get("/audit/", {"object_type": "exceptions.exceptionrequest"}).context["rows"]
    today = timezone.now().date()
    assert client.get("/audit/", {"since": today, "until": today}).context["rows"]
    assert client.get("/audit/", {"until": today - timedelta(days=1)}).context["rows"] == []


def test_audit_log_refuses_a_date_range_that_ends_before_it_starts(client: Client, auditor: Any) -> None:
    client.force_login(auditor)
    page = client.get("/audit/", {"since": "2026-02-01", "until": "2026-01-01"})
    assert page.status_code == 400
    assert b'data-field="until"' in page.content


def test_audit_log_links_each_object_and_shows_the_time_zone(client: Client, submit: Any, auditor: Any) -> None:
    request = submit()
    client.force_login(auditor)
    body = client.get("/audit/").content.decode()
    assert f'href="/requests/{request.pk}/"' in body
    assert "UTC" in body
