"""Mail about approvals, written to the outbox inside the caller's transaction.

Who is told: the people who can supply a missing approval (when a request
arrives, and while a group's approval is still missing), and the requester on
every decision, on scheduling and on activation.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from approvals.access import ApprovalState, approval_state, recipients_for_missing
from exceptions.models import ExceptionRequest
from foundation.outbox.services import enqueue_mail


def _url(request: ExceptionRequest) -> str:
    return f"{settings.EGRESS_BASE_URL.rstrip('/')}{reverse('request-detail', args=[request.pk])}"


def _context(request: ExceptionRequest, **extra: Any) -> dict[str, Any]:
    return {
        "req": request,
        "url": _url(request),
        "workload": request.workload.name,
        "team": request.workload.team.name,
        "environment": request.workload.environment,
        "hosts": [d.host for d in request.destinations.all()],
        **extra,
    }


def ask_for_missing_approvals(request: ExceptionRequest, *, state: ApprovalState | None = None, event: str) -> int:
    """Mail each group whose approval is missing; ``event`` keys idempotency (one mail per group and event)."""
    state = state or approval_state(request)
    sent = 0
    for requirement, addresses in recipients_for_missing(request, state):
        row = enqueue_mail(
            to=list(addresses),
            subject=f"[egress] Request #{request.pk} needs {requirement.describe()}",
            template="emails/approval_needed",
            context=_context(request, requirement=requirement.describe(), rule=state.rule, state=state),
            idempotency_key=f"approval-needed:{request.pk}:r{request.revision}:{requirement.group}:{event}",
        )
        sent += row is not None
    return sent


def tell_requester(request: ExceptionRequest, *, what: str, key: str, **extra: Any) -> None:
    """``what`` names the template ``emails/request_<what>`` and the event."""
    subjects = {
        "approved": f"[egress] Request #{request.pk} approved",
        "approval_added": f"[egress] Request #{request.pk}: one approval given, more needed",
        "rejected": f"[egress] Request #{request.pk} rejected",
        "changes_requested": f"[egress] Request #{request.pk}: changes requested",
        "scheduled": f"[egress] Request #{request.pk} scheduled for its change window",
        "activated": f"[egress] Request #{request.pk} is live",
        "rescheduled": f"[egress] Request #{request.pk}: go-live moved by a freeze",
        "expired": f"[egress] Request #{request.pk} expired without a decision",
    }
    enqueue_mail(
        to=[request.requester.email],
        subject=subjects[what],
        template=f"emails/request_{what}",
        context=_context(request, **extra),
        idempotency_key=f"request-{what}:{request.pk}:{key}",
    )


def tell_activated(request_ids: list[int]) -> None:
    """Tell each requester their scheduled request is live (called inside the activation batch)."""
    requests = ExceptionRequest.objects.filter(pk__in=request_ids).select_related("workload__team", "requester")
    for request in requests.prefetch_related("destinations", "grants"):
        expires = max((g.expires_at for g in request.grants.all()), default=None)
        tell_requester(request, what="activated", key=f"r{request.revision}", expires_at=expires)
