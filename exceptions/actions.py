"""What a user may do with a grant, and why not.

One answer per object, used by the templates, by the API (``allowed_actions``)
and by the services' permission checks, so a button is never shown for an
action the service would refuse, and a refusal always says why. A request's
actions depend on the approval policy and live in approvals.actions.
"""

from __future__ import annotations

from typing import Any

from exceptions.access import revoke_denial, roles_for
from exceptions.choices import GrantStatus
from exceptions.models import Grant
from exceptions.state import OPEN_GRANT_STATUSES
from foundation.actions import Actions

GRANT_ACTIONS = ("revoke", "renew", "do_not_renew", "shorten")


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
