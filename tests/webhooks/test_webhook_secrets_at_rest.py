"""A webhook secret is sealed at rest; deliveries are still signed with it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.factories import UserFactory
from tests.webhooks.test_webhooks import SECRET, Receiver, _file, _outbox_row
from webhooks.delivery import SIGNATURE_HEADER, deliver, verify
from webhooks.models import WebhookDelivery, WebhookSubscription
from webhooks.services import create_subscription, update_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def stored_secret(subscription: WebhookSubscription) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhooksubscription WHERE id = %s", [subscription.pk])
        (raw,) = cursor.fetchone()
    return str(raw)


def test_the_secret_is_not_in_the_database_and_deliveries_are_still_signed_with_it(
    settings: Any, receiver: Receiver, requester: Any, workload: Any
) -> None:
    settings.EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    subscription = create_subscription(actor=admin, url=receiver.url(), events=["request.created"], secret=SECRET)
    assert SECRET not in stored_secret(subscription) and stored_secret(subscription).startswith("fernet:")
    assert WebhookSubscription.objects.get().secret == SECRET

    _file(requester, workload)
    deliver(_outbox_row(WebhookDelivery.objects.get()))
    [(headers, body)] = receiver.received
    assert verify(SECRET, headers[SIGNATURE_HEADER], body, now=int(time.time()))


def test_a_rotated_secret_is_sealed_too(db: Any) -> None:
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    subscription = create_subscription(actor=admin, url="https://hooks.example.com/egress", events=["grant.revoked"])
    generated = WebhookSubscription.objects.get().secret
    assert generated.startswith("whsec_") and generated not in stored_secret(subscription)
    update_subscription(actor=admin, subscription=subscription, secret="whsec_a-new-secret-of-some-length")
    assert "whsec_a-new" not in stored_secret(subscription)
    assert WebhookSubscription.objects.get().secret == "whsec_a-new-secret-of-some-length"
