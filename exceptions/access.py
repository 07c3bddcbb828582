"""Who may see and act on what: one access function per object kind.

Objects a user may not know about are reported as missing (404), not as
forbidden, so ids of other teams' requests leak nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from exceptions import hooks
from exceptions.models import ExceptionRequest, Grant, Workload

SECURITY_GROUP = "security-officers"
AUDITOR_GROUP = "auditors"


@dataclass(frozen=True)
class Roles:
    is_admin: bool
    is_security: bool
    is_auditor: bool
    member_team_ids: frozenset[int]
    approver_team_ids: frozenset[int]

    @property
    def sees_everything(self) -> bool:
        return self.is_admin or self.is_security or self.is_auditor

    @property
    def is_approver(self) -> bool:
        return bool(self.approver_team_ids)

    @property
    def visible_team_ids(self) -> frozenset[int]:
        return self.member_team_ids | self.approver_team_ids

    @property
    def can_file_requests(self) -> bool:
        """Filing (and renewing) needs a team: the request form offers only the user's teams' workloads
        (``requestable_workloads``). Pages show "New request" and "Request access" only when this holds."""
        return bool(self.member_team_ids)

    @property
    def can_break_glass(self) -> bool:
        """A security officer or admin may open a path for any workload, anyone else for their teams'
        (``approvals.breakglass.breakglass_workloads``); a read-only auditor never."""
        return self.is_security or self.is_admin or bool(self.member_team_ids)

    @property
    def decides(self) -> bool:
        return self.is_approver or self.is_security


def roles_for(user: Any) -> Roles:
    """The user's roles, computed once per user object (one request)."""
    cached: Roles | None = getattr(user, "_egress_roles", None)
    if cached is not None:
        return cached
    if not user.is_authenticated or not user.is_active:
        roles = Roles(False, False, False, frozenset(), frozenset())
    else:
        group_names = set(user.groups.values_list("name", flat=True))
        roles = Roles(
            is_admin=bool(user.is_superuser),
            is_security=SECURITY_GROUP in group_names,
            is_auditor=AUDITOR_GROUP in group_names,
            member_team_ids=frozenset(user.team_memberships.values_list("team_id", flat=True)),
            approver_team_ids=hooks.approvals.get().approver_team_ids(user),
        )
    user._egress_roles = roles
    return roles


# --- Workloads ----------------------------------------------------------------


def requestable_workloads(user: Any) -> QuerySet[Workload]:
    """Workloads a user may file requests for: those of their own teams."""
    return Workload.objects.filter(team_id__in=roles_for(user).member_team_ids).select_related("team")


def visible_workloads(user: Any) -> QuerySet[Workload]:
    """Workloads a user may know about: those of teams they belong to or approve for."""
    roles = roles_for(user)
    workloads = Workload.objects.select_related("team")
    if roles.sees_everything:
        return workloads
    return workloads.filter(team_id__in=roles.visible_team_ids)


# --- Requests -----------------------------------------------------------------


def visible_requests(user: Any) -> QuerySet[ExceptionRequest]:
    roles = roles_for(user)
    requests = ExceptionRequest.objects.all()
    if roles.sees_everything:
        return requests
    visible = Q(workload__team_id__in=roles.visible_team_ids) | Q(requester_id=user.pk) | Q(filed_by_id=user.pk)
    # Members of a group the approval policy names (not a team's approvers) see
    # what they may decide and what they decided; the approval layer says which.
    extra = hooks.approvals.get().request_visibility(user)
    if extra is not None:
        visible |= extra
    return requests.filter(visible)


def cancel_denial(user: Any, request: ExceptionRequest) -> str | None:
    roles = roles_for(user)
    if request.requester_id == user.pk or request.workload.team_id in roles.member_team_ids:
        return None
    if roles.is_admin or roles.is_security:
        return None
    return "Only the requester, their team or a security officer may cancel this request."


# Who may decide is the approval policy's question: approvals.gate.access_to_decide.
REQUEST_ACTIONS = {"view", "cancel"}


def access_request(user: Any, pk: int | str, action: str = "view") -> ExceptionRequest:
    if action not in REQUEST_ACTIONS:
        raise ValueError(f"Unknown request action {action!r}")
    request = (
        visible_requests(user)
        .select_related("workload__team", "requester", "decided_by", "renews")
        .prefetch_related("destinations")
        .filter(pk=pk)
        .first()
    )
    if request is None:
        raise Http404("No such request.")
    denial = cancel_denial(user, request) if action == "cancel" else None
    if denial:
        raise PermissionDenied(denial)
    return request


# --- Grants -------------------------------------------------------------------


def visible_grants(user: Any) -> QuerySet[Grant]:
    roles = roles_for(user)
    grants = Grant.objects.all()
    if roles.sees_everything:
        return grants
    return grants.filter(workload__team_id__in=roles.visible_team_ids)


def revoke_denial(user: Any, grant: Grant) -> str | None:
    roles = roles_for(user)
    if roles.is_admin or roles.is_security:
        return None
    team_id = grant.workload.team_id
    if team_id in roles.member_team_ids or team_id in roles.approver_team_ids:
        return None
    return "Only the owning team, its approvers or a security officer may revoke this grant."


def access_grant(user: Any, pk: int | str, action: str = "view") -> Grant:
    if action not in {"view", "revoke"}:
        raise ValueError(f"Unknown grant action {action!r}")
    grant = visible_grants(user).select_related("workload__team", "request", "revoked_by").filter(pk=pk).first()
    if grant is None:
        raise Http404("No such grant.")
    if action == "revoke":
        denial = revoke_denial(user, grant)
        if denial:
            raise PermissionDenied(denial)
    return grant


def can_view_audit(user: Any) -> bool:
    return roles_for(user).sees_everything
