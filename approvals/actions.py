"""What a user may do with a request or a grant, and why not.

One answer per object, used by the templates, by the API (``allowed_actions``)
and by the services' permission checks, so a button is never shown for an
action the service would refuse, and a refusal always says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from approvals.access import ApprovalState, approval_state, approve_denial, decide_denial
from exceptions.access import cancel_denial, revoke_denial, roles_for
from exceptions.choices import GrantStatus, RequestStatus
from exceptions.models import ExceptionRequest, Grant
from exceptions.state import OPEN_GRANT_STATUSES

REQUEST_ACTIONS = ("approve", "reject", "request_changes", "resubmit", "submit_draft", "cancel")
GRANT_ACTIONS = ("revoke", "renew", "do_not_renew", "shorten")


@dataclass(frozen=True)
class Actions:
    """Each action maps to None (allowed) or the reason it is not."""

    denials: dict[str, str | None] = field(default_factory=dict)

    def allows(self, action: str) -> bool:
        return action in self.denials and self.denials[action] is None

    def why_not(self, action: str) -> str:
        return self.denials.get(action) or ""

    @property
    def allowed(self) -> list[str]:
        return [name for name, denial in self.denials.items() if denial is None]

    @property
    def refused(self) -> dict[str, str]:
        return {name: denial for name, denial in self.denials.items() if denial is not None}

    def __getitem__(self, action: str) -> bool:
        # Templates: {% if actions.approve %}; other names fall through to attributes.
        if action not in self.denials:
            raise KeyError(action)
        return self.allows(action)


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


def grant_actions(user: Any, grant: Grant) -> Actions:
    roles = roles_for(user)
    team_id = grant.workload.team_id
    open_grant = grant.status in OPEN_GRANT_STATUSES
    closed = f"The grant is {grant.get_status_display().lower()}."
    denials: dict[str, str | None] = {}
    denials["revoke"] = revoke_denial(user, grant) if open_grant else closed
    in_team = team_id in roles.member_team_ids
    if not open_grant:
        denials["renew"] = closed
    elif not in_team:
        denials["renew"] = f"Only members of team {grant.workload.team.name} file renewals."
    elif grant.do_not_renew:
        denials["renew"] = 'The team marked this grant "do not renew".'
    else:
        denials["renew"] = None
    if not open_grant:
        denials["do_not_renew"] = closed
    elif grant.do_not_renew:
        denials["do_not_renew"] = 'Already marked "do not renew".'
    else:
        denials["do_not_renew"] = (
            None
            if in_team or team_id in roles.approver_team_ids
            else (f"Only team {grant.workload.team.name} or its approvers may stop its renewal.")
        )
    if grant.status != GrantStatus.ACTIVE and grant.status != GrantStatus.SCHEDULED:
        denials["shorten"] = closed
    elif team_id in roles.approver_team_ids or roles.is_security or roles.is_admin:
        denials["shorten"] = None
    else:
        denials["shorten"] = f"Only approvers of team {grant.workload.team.name} or a security officer may shorten it."
    return Actions(denials)
