from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals.services import approve_request

pytestmark = pytest.mark.django_db


def sample(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_reflect_the_database(client: Client, submit: Any, approver: Any) -> None:
    approve_request(actor=approver, request=submit())
    submit()
    body = client.get("/metrics").content.decode()
    assert sample(body, 'egress_grants{status="active"}') == 1
    assert sample(body, 'egress_requests{status="pending"}') == 1
    assert sample(body, "egress_pending_oldest_age_seconds") >= 0
    assert sample(body, "egress_audit_events_total") == 4


def test_metrics_token_is_enforced_when_set(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
