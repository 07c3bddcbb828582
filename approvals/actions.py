"""What a user may do with a request, and why not (grants: exceptions.actions).

One answer per object, used by the templates, by the API (``allowed_actions``)
and by the services' permission checks, so a button is never shown for an
action the service would refuse, and a refusal always says why.
"""

from __future__ import annotations

from typing import Any

from approvals.access import ApprovalState, approval_state, approve_denial, decide_denial
from exceptions.access import cancel_denial
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest
from foundation.actions import Actions

REQUEST_ACTIONS = ("approve", "reject", "request_changes", "resubmit", "submit_draft", "cancel")


def request_actions(user: Any, request: ExceptionRequest, *, state: ApprovalState | None = None) -> Actions:
    status = request.status
    denials: dict[str, str | None] = {}
    if status == RequestStatus.PENDING:
        state = state or approval_state(request)
        denials["approve"] = approve_denial(user, request, state)
        decide = decide_denial(user, request, state)
        denials["reject"] = decide
        denials["request_changes"] = decide
    else:
        label = request.get_status_display().lower()
        for action in ("approve", "reject", "request_changes"):
            denials[action] = f"The request is {label}; only pending requests are decided."
    if status == RequestStatus.CHANGES_REQUESTED:
        denials["resubmit"] = None if request.requester_id == user.pk else "Only the requester may edit and resubmit."
    else:
        denials["resubmit"] = "Only a request sent back with changes requested is edited and resubmitted."
    if status == RequestStatus.DRAFT:
        denials["submit_draft"] = (
            None if request.requester_id == user.pk else "Only the author of a draft may submit it."
        )
    else:
        denials["submit_draft"] = "Only drafts are submitted."
    if status in (RequestStatus.DRAFT, RequestStatus.PENDING, RequestStatus.CHANGES_REQUESTED):
        denials["cancel"] = cancel_denial(user, request)
    else:
        denials["cancel"] = f"The request is {request.get_status_display().lower()}; it can no longer be cancelled."
    return Actions(denials)
