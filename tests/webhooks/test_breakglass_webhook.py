"""breakglass.used goes to subscribers when someone breaks glass; a drill does not."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals.models import BreakGlassUse
from foundation.outbox.models import OutboxMessage
from tests.approvals import test_breakglass as breakglass_tests
from tests.approvals.test_breakglass import DRILL, PAGE, form
from tests.factories import UserFactory
from webhooks.models import WebhookDelivery
from webhooks.services import create_subscription

# The break-glass tests' fixtures: a requester with an authenticator, signed in and stepped up.
mfa_requester = breakglass_tests.mfa_requester
stepped_up = breakglass_tests.stepped_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(settings: Any) -> None:
    settings.EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    admin = UserFactory(username="root", is_superuser=True)
    create_subscription(actor=admin, url="http://127.0.0.1:9/hook", events=["breakglass.used"], secret="s" * 20)


def test_breaking_glass_emits_breakglass_used(subscribed: None, stepped_up: Client, workload: Any) -> None:
    assert stepped_up.post(PAGE, form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    [delivery] = WebhookDelivery.objects.all()
    data = delivery.body["data"]["breakglass"]
    assert delivery.event == "breakglass.used" and data["id"] == use.pk and data["incident_ref"] == use.incident_ref
    assert use.request is not None
    assert data["user"] == "alice" and sorted(data["grants"]) == sorted(g.pk for g in use.request.grants.all())
    assert OutboxMessage.objects.filter(kind="webhook").count() == 1


def test_a_drill_emits_nothing(subscribed: None, stepped_up: Client, workload: Any) -> None:
    assert stepped_up.post(DRILL, form(workload)).status_code == 302
    assert not WebhookDelivery.objects.exists()
