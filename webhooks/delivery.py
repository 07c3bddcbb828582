"""Sending one webhook delivery: the outbox handler for the ``webhook`` kind.

Signature scheme (documented in docs/webhooks.md, "Signature"): ``Egress-Signature: t=<unix seconds>,v1=<hex>``
where ``v1`` is HMAC-SHA256 with the subscription's secret over ``"<t>.<raw body>"``.
A receiver recomputes it, compares in constant time, and refuses a ``t`` older
than its replay window (we suggest 5 minutes).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from foundation.outbox.errors import DeliveryError
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from webhooks.targets import TargetRefused, resolve

SIGNATURE_HEADER = "Egress-Signature"
USER_AGENT = "EgressPortal-Webhooks/1"
# Answers that another try may change; any other 4xx means the receiver refuses this body for good.
RETRYABLE_4XX = {408, 409, 425, 429}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """The receiver's check (also the sample verifier in docs/webhooks.md)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST to the checked address (not a second DNS answer); TLS still verifies the host name."""
    scheme, port, address = resolve(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)

    def connect_to_checked_address(
        _address: tuple[str, int], timeout: float | None = None, source_address: Any = None
    ) -> socket.socket:
        return socket.create_connection((address, port), timeout, source_address)

    connection._create_connection = connect_to_checked_address  # type: ignore[attr-defined]
    try:
        connection.request("POST", path, body=body, headers={**headers, "Host": parts.netloc.rpartition("@")[2]})
        response = connection.getresponse()
        response.read(65536)
        return int(response.status)
    finally:
        connection.close()


def _log(delivery: WebhookDelivery, *, at: datetime, status_code: int | None, latency_ms: int, error: str) -> None:
    status = DeliveryStatus.DELIVERED if status_code is not None and 200 <= status_code < 300 else None
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, at=at, status_code=status_code, latency_ms=latency_ms, error=error[:2000]
        )
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_latency_ms = latency_ms
        delivery.last_error = error[:2000]
        delivery.status = status or delivery.status
        if status:
            delivery.delivered_at = at
        delivery.save(
            update_fields=["attempts", "last_status_code", "last_latency_ms", "last_error", "status", "delivered_at"]
        )


def _finish_failed(delivery: WebhookDelivery, message: str, *, permanent: bool) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.REFUSED if permanent else DeliveryStatus.FAILED
    )
    raise DeliveryError(message, permanent=permanent)


def deliver(message: Any) -> None:
    """Outbox handler: send the delivery named in the row's payload; raise DeliveryError to retry or park."""
    try:
        delivery = WebhookDelivery.objects.select_related("subscription").get(pk=int(message.payload["delivery"]))
    except (KeyError, TypeError, ValueError, WebhookDelivery.DoesNotExist) as exc:
        raise DeliveryError(f"no such webhook delivery: {exc!r}", permanent=True) from exc
    subscription = delivery.subscription
    if not subscription.active or delivery.status == DeliveryStatus.DELIVERED:
        return  # switched off since, or already delivered (a redelivery raced it): nothing to send
    body = json.dumps(delivery.body, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Egress-Event": delivery.event,
        "Egress-Event-Id": str(delivery.event_id),
        "Egress-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: sign(subscription.secret, timestamp, body),
    }
    started, at = time.monotonic(), timezone.now()
    try:
        status_code = _post(subscription.url, body, headers, settings.EGRESS_WEBHOOK_TIMEOUT_SECONDS)
    except TargetRefused as exc:
        _log(delivery, at=at, status_code=None, latency_ms=0, error=str(exc))
        _finish_failed(delivery, str(exc), permanent=exc.permanent)
        return
    except (OSError, http.client.HTTPException) as exc:
        _log(delivery, at=at, status_code=None, latency_ms=int((time.monotonic() - started) * 1000), error=repr(exc))
        _finish_failed(delivery, f"{subscription.url}: {exc!r}", permanent=False)
        return
    _log(delivery, at=at, status_code=status_code, latency_ms=int((time.monotonic() - started) * 1000), error="")
    if 200 <= status_code < 300:
        return
    permanent = 400 <= status_code < 500 and status_code not in RETRYABLE_4XX
    _finish_failed(delivery, f"{subscription.url} answered {status_code}", permanent=permanent)
