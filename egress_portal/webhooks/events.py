"""The events a webhook may subscribe to, and queuing them from the services that cause them.

``emit`` runs inside the causing service's transaction: it writes one delivery row
per listening subscription and one outbox row per delivery, so the event is sent
if and only if the change commits (issue 7's relay delivers ``webhook`` rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from egress_portal.outbox.services import enqueue_many
from egress_portal.webhooks.models import WebhookDelivery, WebhookSubscription

KIND = "webhook"
EVENTS: dict[str, str] = {
    "request.created": "a request was submitted for approval",
    "request.approved": "a request got every approval it needs",
    "request.rejected": "a request was rejected",
    "request.changes_requested": "an approver asked the requester for changes",
    "grant.scheduled": "a grant was issued to take effect later",
    "grant.activated": "a grant took effect",
    "grant.shortened": "a grant's expiry was brought forward (shortened, or a renewal takes over then)",
    "grant.expiring": "a grant expires soon (sent with the expiry reminder)",
    "grant.expired": "a grant expired",
    "grant.revoked": "a grant was revoked; reason_kind says why (manual, stale, breakglass_closed, ...)",
    "bundle.published": "a new policy bundle revision was published",
    "breakglass.used": "someone used break-glass access",
}
_NAMESPACE = uuid.UUID("6f1c1f0e-2d4b-4c39-9a55-0e7d8c2b9a10")


def outbox_key(delivery_id: int, attempt_round: int = 0) -> str:
    return f"webhook:{delivery_id}:{attempt_round}"


def emit(event: str, *, occurrences: Iterable[tuple[str, Mapping[str, Any]]], now: datetime | None = None) -> int:
    """Queue ``event`` for each (occurrence key, data); the key (e.g. ``grant:7:expired``) makes the
    event id stable, so a receiver can drop a duplicate. Returns the number of deliveries queued."""
    if event not in EVENTS:
        raise ValueError(f"Unknown webhook event {event!r}")
    listeners = [s for s in WebhookSubscription.objects.filter(active=True).order_by("id") if event in s.events]
    if not listeners:
        return 0
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("emit() runs inside the transaction of the change that causes the event.")
    created_at = (now or timezone.now()).isoformat()
    deliveries = []
    for key, data in occurrences:
        event_id = uuid.uuid5(_NAMESPACE, f"{event}:{key}")
        body = {"id": str(event_id), "type": event, "created_at": created_at, "data": dict(data)}
        deliveries += [
            WebhookDelivery(subscription=subscription, event_id=event_id, event=event, body=body)
            for subscription in listeners
        ]
    # Two inserts whatever the count: a batch job expiring thousands of grants emits in one go.
    created = WebhookDelivery.objects.bulk_create(deliveries)
    enqueue_many(kind=KIND, items=[(outbox_key(d.pk), {"delivery": d.pk}) for d in created])
    return len(created)


def _url(path: str) -> str:
    return f"{settings.EGRESS_BASE_URL.rstrip('/')}{path}"


def request_data(request: Any) -> dict[str, Any]:
    return {
        "request": {
            "id": request.pk,
            "status": request.status,
            "workload": request.workload.identity,
            "team": request.workload.team.slug,
            "requester": request.requester.get_username(),
            "ticket_ref": request.ticket_ref,
            "revision": request.revision,
            "url": _url(f"/requests/{request.pk}/"),
            "api_url": _url(f"/api/v1/requests/{request.pk}/"),
        }
    }


def grant_data(grant: Any) -> dict[str, Any]:
    return {
        "grant": {
            "id": grant.pk,
            "status": grant.status,
            "identity": grant.identity,
            "host": grant.host,
            "port": grant.port,
            "protocol": grant.protocol,
            "valid_from": grant.valid_from.isoformat() if grant.valid_from else None,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "request": grant.request_id,
            "api_url": _url(f"/api/v1/grants/{grant.pk}/"),
        }
    }


def emit_request(event: str, request: Any, *, revision: bool = False) -> int:
    key = f"request:{request.pk}:{request.revision}" if revision else f"request:{request.pk}"
    return emit(event, occurrences=[(key, request_data(request))])


def emit_grants(event: str, grants: Iterable[Any]) -> int:
    return emit(event, occurrences=((f"grant:{g.pk}", grant_data(g)) for g in grants))
