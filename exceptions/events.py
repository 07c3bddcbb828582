"""The events the portal announces when state changes, and announcing them.

Services call ``emit`` (or ``emit_request``/``emit_grants``) inside the
transaction of the change that causes the event. The core does not know who
listens: the webhooks app registers its sink here at start-up
(``WebhooksConfig.ready``) and turns each event into signed deliveries, so an
event is sent if and only if the change commits. The payloads describe the
core's objects, so they are built here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings

from foundation.hooks import Hook

EVENTS: dict[str, str] = {
    "request.created": "a request was submitted for approval",
    "request.approved": "a request got every approval it needs",
    "request.rejected": "a request was rejected",
    "request.changes_requested": "an approver asked the requester for changes",
    "grant.scheduled": "a grant was issued to take effect later",
    "grant.activated": "a grant took effect",
    "grant.shortened": "a grant's expiry was brought forward (shortened, or a renewal takes over then)",
    "grant.rescheduled": "a scheduled grant's window moved (its go-live fell inside a change freeze)",
    "grant.expiring": "a grant expires soon (sent with the expiry reminder)",
    "grant.expired": "a grant expired",
    "grant.revoked": "a grant was revoked; reason_kind says why (manual, stale, breakglass_closed, ...)",
    "bundle.published": "a new policy bundle revision was published",
    "policy.drift_detected": "commits the portal did not make changed the policy branch; the next push restores it",
    "breakglass.used": "someone used break-glass access",
}

# sink(event, occurrences=[(key, data), ...], now=...) -> how many deliveries it queued.
# A sink with nobody listening for ``event`` returns 0 without reading ``occurrences``: a batch
# job's occurrences read their grants lazily, so no subscription means no read.
event_sinks: Hook[[str, Iterable[tuple[str, Mapping[str, Any]]], datetime | None], int] = Hook("event_sinks")


def emit(event: str, *, occurrences: Iterable[tuple[str, Mapping[str, Any]]], now: datetime | None = None) -> int:
    """Announce ``event`` once per (occurrence key, data); returns what the sinks queued."""
    if event not in EVENTS:
        raise ValueError(f"Unknown event {event!r}; the events are listed in exceptions/events.py")
    if len(event_sinks.registered) > 1:
        occurrences = list(occurrences)  # every sink reads them
    return sum(event_sinks(event, occurrences, now))


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
