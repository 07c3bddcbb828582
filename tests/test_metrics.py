from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
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


@pytest.mark.django_db(transaction=True)
def test_outbox_deliveries_are_counters_by_kind_and_outcome(client: Client, settings: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from foundation.outbox.relay import prune_delivered, relay_due
    from foundation.outbox.services import enqueue_mail

    with transaction.atomic():
        enqueue_mail(
            to=["a@example.org"], subject="s", template="emails/expiry_reminder", context={}, idempotency_key="m1"
        )
    relay_due()
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").content.decode())}
    family = families["egress_outbox_deliveries"]
    assert family.type == "counter"
    values = {(s.labels["kind"], s.labels["outcome"]): s.value for s in family.samples if s.name.endswith("_total")}
    assert values[("mail", "delivered")] == 1 and values[("mail", "parked")] == 0
    # Every configured kind has its three series, and nothing else is a label.
    assert {kind for kind, _ in values} == set(settings.OUTBOX_HANDLERS)
    settings.OUTBOX_KEEP_DELIVERED_DAYS = 0
    prune_delivered()
    body = client.get("/metrics").content.decode()
    assert sample(body, 'egress_outbox_deliveries_total{kind="mail",outcome="delivered"}') == 1
