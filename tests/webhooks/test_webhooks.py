"""Webhooks: received by a real HTTP server on loopback, signed, retried, refused for private targets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from exceptions.services.grants import revoke_grant
from exceptions.tokens import create_token
from foundation.outbox.models import OutboxMessage, OutboxStatus
from foundation.outbox.relay import relay_due
from tests.api_problems import field_errors, problem
from tests.exceptions.test_tokens import payload
from tests.factories import UserFactory
from webhooks.delivery import SIGNATURE_HEADER, DeliveryError, deliver, verify
from webhooks.events import outbox_key
from webhooks.models import SECRET_MIN_LENGTH, DeliveryStatus, WebhookDelivery, WebhookSubscription
from webhooks.services import create_subscription
from webhooks.targets import address_problem

pytestmark = pytest.mark.django_db
SECRET = "whsec_test-secret-for-the-receiver"


class Receiver:
    """A loopback HTTP server answering with the statuses queued in ``answers`` (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks/egress"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def admin(db: Any) -> Any:
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    settings.EGRESS_WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def _outbox_row(delivery: WebhookDelivery, round_: int = 0) -> OutboxMessage:
    return OutboxMessage.objects.get(idempotency_key=outbox_key(delivery.pk, round_))


def _file(requester: Any, workload: Any) -> int:
    client = APIClient()
    client.force_authenticate(requester)
    response = client.post("/api/v1/requests/", payload(workload), format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def test_an_event_is_delivered_signed_and_logged(
    allow_loopback: None, receiver: Receiver, admin: Any, requester: Any, workload: Any
) -> None:
    create_subscription(actor=admin, url=receiver.url(), events=["request.created"], secret=SECRET)
    pk = _file(requester, workload)
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "request.created" and delivery.body["data"]["request"]["id"] == pk
    deliver(_outbox_row(delivery))
    [(headers, body)] = receiver.received
    assert verify(SECRET, headers[SIGNATURE_HEADER], body, now=int(time.time()))
    assert not verify("another-secret", headers[SIGNATURE_HEADER], body, now=int(time.time()))
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body, now=int(time.time()) + 3600)  # replay window
    assert json.loads(body)["type"] == "request.created" and headers["Egress-Event-Id"] == str(delivery.event_id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 1, 200)
    assert delivery.last_latency_ms is not None and delivery.attempt_log.count() == 1


def test_a_500_is_retried_by_the_relay_with_backoff_until_delivered(
    allow_loopback: None, receiver: Receiver, admin: Any, requester: Any, workload: Any
) -> None:
    create_subscription(actor=admin, url=receiver.url(), events=["request.created"], secret=SECRET)
    _file(requester, workload)
    delivery = WebhookDelivery.objects.get()
    row = _outbox_row(delivery)
    receiver.answers = [500]
    now = timezone.now()
    relay_due(now=now)
    delivery.refresh_from_db()
    row.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.FAILED, 1, 500)
    assert row.status == OutboxStatus.PENDING and row.attempts == 1 and row.available_at > now  # backoff
    relay_due(now=now)  # not due yet: nothing sent
    assert len(receiver.received) == 1
    relay_due(now=now + timedelta(hours=2))
    delivery.refresh_from_db()
    row.refresh_from_db()
    assert (delivery.status, delivery.attempts, row.status) == (DeliveryStatus.DELIVERED, 2, OutboxStatus.DELIVERED)
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]
    first, second = receiver.received
    assert first[1] == second[1]  # the same body, so the same event id
    assert all(verify(SECRET, h[SIGNATURE_HEADER], body, now=int(time.time())) for h, body in receiver.received)


def test_a_name_resolving_to_loopback_is_refused_at_delivery_and_parked(
    receiver: Receiver, admin: Any, requester: Any, workload: Any
) -> None:
    # A host name passes the check at save time; at delivery it resolves to 127.0.0.1.
    create_subscription(actor=admin, url=receiver.url("localhost"), events=["request.created"], secret=SECRET)
    _file(requester, workload)
    delivery = WebhookDelivery.objects.get()
    with pytest.raises(DeliveryError) as refused:
        deliver(_outbox_row(delivery))
    assert refused.value.permanent is True and "loopback" in str(refused.value)
    relay_due()
    assert _outbox_row(delivery).status == OutboxStatus.PARKED  # not retried
    assert receiver.received == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.REFUSED and "loopback" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        # IPv6 forms that carry an IPv4 address reach it through a translator or a tunnel (issue 17).
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64
        "http://[2002:a9fe:a9fe::]/hook",  # 6to4
        "http://[::a9fe:a9fe]/hook",  # IPv4-compatible
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo, to 192.0.2.45
        "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64
    ],
)
def test_private_link_local_and_metadata_targets_are_refused_when_saved(admin: Any, url: str) -> None:
    client = APIClient()
    client.force_authenticate(admin)
    response = client.post("/api/v1/webhooks/", {"url": url, "events": ["grant.revoked"]}, format="json")
    assert "url" in field_errors(response)
    assert WebhookSubscription.objects.count() == 0


def test_an_ipv6_address_is_judged_by_the_ipv4_address_it_carries() -> None:
    assert "carries 169.254.169.254" in (address_problem("64:ff9b::a9fe:a9fe") or "")
    assert address_problem("64:ff9b::808:808") is None  # NAT64 to a public address is public
    assert address_problem("2002:808:808::1") is None  # 6to4 of a public address
    assert address_problem("2606:4700:4700::1111") is None


def test_admins_manage_subscriptions_through_the_api_and_others_cannot(
    allow_loopback: None, admin: Any, requester: Any
) -> None:
    _, key = create_token(actor=admin, user=admin, name="ops", scopes=["webhooks:manage"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {"url": "http://127.0.0.1:9/hook", "events": ["grant.revoked", "grant.expired"]}
    created = client.post("/api/v1/webhooks/", body, format="json")
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    assert created["Location"] == f"/api/v1/webhooks/{created.json()['id']}/"
    assert "secret" not in client.get(created["Location"]).json()
    patched = client.patch(created["Location"], {"active": False}, format="json")
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert [e.action for e in AuditEvent.objects.order_by("seq") if e.action.startswith("webhook.")] == [
        "webhook.created",
        "webhook.updated",
    ]
    unknown = client.post("/api/v1/webhooks/", {**body, "events": ["grant.teleported"]}, format="json")
    assert "events[0]" in field_errors(unknown)
    person = APIClient()
    person.force_authenticate(requester)
    assert problem(person.get("/api/v1/webhooks/"), 403)["code"] == "permission_denied"
    assert client.delete(created["Location"]).status_code == 204


def test_decisions_and_grant_changes_emit_their_events(
    allow_loopback: None, admin: Any, requester: Any, approver: Any, workload: Any
) -> None:
    events = ["request.approved", "request.rejected", "request.changes_requested", "grant.activated", "grant.revoked"]
    create_subscription(actor=admin, url="http://127.0.0.1:9/hook", events=events, secret=SECRET)
    decider = APIClient()
    decider.force_authenticate(approver)
    approved = _file(requester, workload)
    decider.post(f"/api/v1/requests/{approved}/approve/", {}, format="json")
    rejected = _file(requester, workload)
    decider.post(f"/api/v1/requests/{rejected}/reject/", {"reason": "Use the proxy."}, format="json")
    changes = _file(requester, workload)
    decider.post(f"/api/v1/requests/{changes}/request-changes/", {"reason": "Which port?"}, format="json")
    grant = WebhookDelivery.objects.get(event="grant.activated").body["data"]["grant"]
    from exceptions.models import Grant

    revoke_grant(actor=approver, grant=Grant.objects.get(pk=grant["id"]), reason="Incident 12")
    sent = {d.event: d.body["data"] for d in WebhookDelivery.objects.all()}
    assert set(sent) == set(events)
    assert sent["request.approved"]["request"]["id"] == approved
    assert sent["request.rejected"]["request"]["id"] == rejected
    assert sent["request.changes_requested"]["request"]["id"] == changes
    assert sent["grant.revoked"]["grant"]["id"] == grant["id"]
    assert (sent["grant.revoked"]["reason_kind"], sent["grant.revoked"]["reason"]) == ("manual", "Incident 12")
    assert OutboxMessage.objects.filter(kind="webhook").count() == len(events)


def test_the_page_lists_deliveries_and_redelivers(
    allow_loopback: None, receiver: Receiver, admin: Any, requester: Any, workload: Any
) -> None:
    subscription = create_subscription(actor=admin, url=receiver.url(), events=["request.created"], secret=SECRET)
    _file(requester, workload)
    delivery = WebhookDelivery.objects.get()
    receiver.answers = [503]
    with pytest.raises(DeliveryError):
        deliver(_outbox_row(delivery))
    page = Client()
    page.force_login(admin)
    detail = page.get(f"/webhooks/{subscription.pk}/")
    assert detail.status_code == 200 and b"503" in detail.content and b"Redeliver" in detail.content
    assert page.post(f"/webhooks/deliveries/{delivery.pk}/redeliver/").status_code == 302
    assert AuditEvent.objects.filter(action="webhook.redelivered").count() == 1
    deliver(_outbox_row(delivery, 2))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and len(receiver.received) == 2
    outsider_page = Client()
    outsider_page.force_login(requester)
    assert outsider_page.get("/webhooks/").status_code == 403


def test_jobs_emit_expiring_and_expired_and_a_draft_submission_emits_created(
    allow_loopback: None, admin: Any, requester: Any, approver: Any, workload: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from exceptions.models import Grant
    from exceptions.reminders import send_expiry_reminders
    from exceptions.services.batches import expire_due_grants

    events = ["grant.expiring", "grant.expired", "request.created"]
    create_subscription(actor=admin, url="http://127.0.0.1:9/hook", events=events, secret=SECRET)
    client = APIClient()
    client.force_authenticate(requester)
    draft = client.post("/api/v1/requests/", {**payload(workload), "draft": True}, format="json").json()["id"]
    assert not WebhookDelivery.objects.exists()  # a draft is not yet a request for approval
    client.post(f"/api/v1/requests/{draft}/submit/")
    assert WebhookDelivery.objects.get().body["data"]["request"]["id"] == draft
    decider = APIClient()
    decider.force_authenticate(approver)
    grant_id = decider.post(f"/api/v1/requests/{draft}/approve/", {}, format="json").json()["grants"][0]["id"]
    grant = Grant.objects.get(pk=grant_id)
    send_expiry_reminders(now=grant.expires_at - timedelta(hours=12))
    # First seen inside both thresholds: one event, for the most urgent (1 day); the 7-day one has passed.
    [expiring] = [d.body for d in WebhookDelivery.objects.filter(event="grant.expiring")]
    assert expiring["data"]["days_before"] == 1 and expiring["data"]["grant"]["id"] == grant_id
    send_expiry_reminders(now=grant.expires_at - timedelta(hours=11))
    assert WebhookDelivery.objects.filter(event="grant.expiring").count() == 1
    expire_due_grants(now=grant.expires_at + timedelta(seconds=1))
    assert WebhookDelivery.objects.get(event="grant.expired").body["data"]["grant"]["id"] == grant_id
    assert timezone.now() < grant.expires_at  # the jobs ran with a clock they were given


def test_an_admin_adds_a_subscription_on_the_page_and_sees_its_secret_once(admin: Any) -> None:
    page = Client()
    page.force_login(admin)
    response = page.post(
        "/webhooks/", {"url": "https://hooks.example.com/egress", "events": ["grant.revoked", "bundle.published"]}
    )
    assert response.status_code == 200
    subscription = WebhookSubscription.objects.get()
    assert subscription.events == ["bundle.published", "grant.revoked"]
    assert subscription.secret.encode() in response.content
    assert subscription.secret.encode() not in page.get(f"/webhooks/{subscription.pk}/").content
    refused = page.post("/webhooks/", {"url": "http://10.0.0.5/hook", "events": ["grant.revoked"]})
    assert refused.status_code == 400 and b"private" in refused.content


@pytest.mark.parametrize("secret", ["short", "x" * (SECRET_MIN_LENGTH - 1)])
def test_the_page_and_the_api_refuse_the_same_short_secret_with_the_same_message(admin: Any, secret: str) -> None:
    page = Client()
    page.force_login(admin)
    on_page = page.post(
        "/webhooks/", {"url": "https://hooks.example.com/egress", "events": ["grant.revoked"], "secret": secret}
    )
    assert on_page.status_code == 400
    assert not WebhookSubscription.objects.exists()
    message = f"The secret must be at least {SECRET_MIN_LENGTH} characters (it has {len(secret)})"
    assert message in on_page.content.decode()
    with pytest.raises(ValidationError) as refused:
        create_subscription(
            actor=admin, url="https://hooks.example.com/egress", events=["grant.revoked"], secret=secret
        )
    assert message in refused.value.message_dict["secret"][0]
    _, key = create_token(actor=admin, user=admin, name="ops", scopes=["webhooks:manage"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {"url": "https://hooks.example.com/egress", "events": ["grant.revoked"], "secret": secret}
    by_api = api.post("/api/v1/webhooks/", body, format="json")
    assert by_api.status_code == 400 and message in str(field_errors(by_api)["secret"])
    accepted = page.post(
        "/webhooks/",
        {"url": "https://hooks.example.com/egress", "events": ["grant.revoked"], "secret": "x" * SECRET_MIN_LENGTH},
    )
    assert accepted.status_code == 200 and WebhookSubscription.objects.get().secret == "x" * SECRET_MIN_LENGTH
