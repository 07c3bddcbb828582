"""Reads for the approver dashboard; no writes here.

"Requests this user may decide" and "needs my group" are the eligibility
clauses (``approvals.eligibility``) compiled to SQL, so the database applies
them before paginating, a page costs the same number of queries at any queue
length, and the queue holds exactly what the single-request check allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from approvals.access import ApprovalState, approval_state, profile_for
from approvals.actions import Actions, request_actions
from approvals.eligibility import Compiler, clauses_for, compile_clauses
from approvals.golive import go_live_for
from approvals.models import Decision
from approvals.policy import Policy, current_policy
from approvals.windows import Calendar, GoLive, load_calendar
from exceptions.access import roles_for
from exceptions.approval_preview import preview_approval
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest

HOSTS_SHOWN = 3


@dataclass(frozen=True)
class QueueFilters:
    environment: str = ""
    tier: str = ""
    team: str = ""
    purpose: str = ""
    needs_my_group: bool = False


def decidable_requests(user: Any, *, policy: Policy, filters: QueueFilters | None = None) -> QuerySet[ExceptionRequest]:
    """Pending requests ``user`` may decide under ``policy``, oldest first (never their own, nor filed by them).

    The filter is the eligibility clauses of ``approvals.eligibility`` compiled
    to SQL: the decide clauses, or with ``needs_my_group`` the approve clauses
    (a slot of theirs still open, not approved by them yet), exactly what
    ``request_actions`` allows one request at a time.
    """
    filters = filters or QueueFilters()
    clauses = clauses_for(profile_for(user), policy)
    compiler = Compiler()
    may = compile_clauses(clauses.approve if filters.needs_my_group else clauses.decide, compiler)
    queryset = compiler.apply(ExceptionRequest.objects.filter(status=RequestStatus.PENDING), may)
    if filters.environment:
        queryset = queryset.filter(workload__environment=filters.environment)
    if filters.tier:
        queryset = queryset.filter(risk_tier=filters.tier)
    if filters.team:
        queryset = queryset.filter(workload__team__slug=filters.team)
    if filters.purpose:
        queryset = queryset.filter(purpose=filters.purpose)
    return queryset.order_by("created_at", "id")


def approvable_requests(user: Any, *, policy: Policy) -> QuerySet[ExceptionRequest]:
    """Pending requests whose ``allowed_actions`` contain ``approve`` for ``user`` (the API's ``?decidable=true``)."""
    return decidable_requests(user, policy=policy, filters=QueueFilters(needs_my_group=True))


def with_decision_data(queryset: QuerySet[ExceptionRequest]) -> QuerySet[ExceptionRequest]:
    """What rendering a row needs, fetched in a fixed number of queries per page."""
    return queryset.select_related("workload__team", "requester").prefetch_related(
        "destinations",
        Prefetch("decisions", queryset=Decision.objects.select_related("actor").order_by("created_at", "id")),
    )


@dataclass(frozen=True)
class QueueRow:
    req: ExceptionRequest
    state: ApprovalState
    go_live: GoLive
    actions: Actions
    age: timedelta
    hosts: list[str]
    more_hosts: int


def queue_rows(user: Any, requests: list[ExceptionRequest], *, policy: Policy, now: datetime) -> list[QueueRow]:
    """Rows for one page: approval state, go-live and actions computed from what was prefetched."""
    calendar: Calendar = load_calendar(now)
    rows = []
    for req in requests:
        state = approval_state(req, policy=policy, decisions=req.decisions.all())
        hosts = [d.host for d in req.destinations.all()]
        rows.append(
            QueueRow(
                req=req,
                state=state,
                go_live=go_live_for(req, now=now, state=state, calendar=calendar),
                actions=request_actions(user, req, state=state),
                age=now - req.created_at,
                hosts=hosts[:HOSTS_SHOWN],
                more_hosts=max(len(hosts) - HOSTS_SHOWN, 0),
            )
        )
    return rows


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk" or ""
    text: str


def colour_diff(diff: str) -> list[DiffLine]:
    lines = []
    for text in diff.splitlines():
        if text.startswith(("+++", "---")):
            kind = "file"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        elif text.startswith("@@"):
            kind = "hunk"
        else:
            kind = ""
        lines.append(DiffLine(kind, text))
    return lines


def preview_summary(req: ExceptionRequest, files: int) -> str:
    """One line: ``+2 hosts for payments/checkout-api, 1 wildcard, 3 files change``."""
    hosts = [d.host for d in req.destinations.all()]
    wildcards = sum(1 for h in hosts if h.startswith("*."))
    parts = [f"+{len(hosts)} host{'s' if len(hosts) != 1 else ''} for {req.workload.team.slug}/{req.workload.name}"]
    if wildcards:
        parts.append(f"{wildcards} wildcard{'s' if wildcards != 1 else ''}")
    parts.append(f"{files} file{'s' if files != 1 else ''} change" if files else "no policy file changes")
    return ", ".join(parts)


def request_page(user: Any, req: ExceptionRequest, *, now: datetime) -> dict[str, Any]:
    """What the request page shows about approvals: rule, why, missing, go-live, who approved, actions."""
    policy_state = approval_state(req)
    actions = request_actions(user, req, state=policy_state)
    decisions = list(req.decisions.select_related("actor").order_by("created_at", "id"))
    context: dict[str, Any] = {
        "approval": policy_state,
        "actions": actions,
        "decisions": decisions,
        "go_live": None,
        "preview_files": None,
        "step_up_seconds": settings.EGRESS_STEP_UP_SECONDS,
    }
    if req.status in (RequestStatus.PENDING, RequestStatus.DRAFT, RequestStatus.CHANGES_REQUESTED):
        context["go_live"] = go_live_for(req, now=now, state=policy_state)
    if req.status == RequestStatus.PENDING and (actions.allows("approve") or roles_for(user).sees_everything):
        go_live = context["go_live"]
        preview = preview_approval(req, now=now, decided_by=user.get_username(), not_before=go_live.at)
        context["preview_files"] = [(d.path, colour_diff(d.diff)) for d in preview.on_approval]
        context["preview_summary"] = preview_summary(req, len(preview.on_approval))
        context["preview_go_live"] = preview.go_live
        context["preview_live_files"] = [(d.path, colour_diff(d.diff)) for d in preview.at_go_live]
        context["preview_services"] = preview.services
    return context


def named_group_visibility(user: Any) -> Q | None:
    """For members of a group the policy names: the requests they may decide or have decided."""
    if not user.is_authenticated:
        return None
    policy = current_policy()
    if not profile_for(user).groups & policy.named_groups():
        return None
    decided = Decision.objects.filter(request=OuterRef("pk"), actor_id=user.pk)
    return Q(pk__in=decidable_requests(user, policy=policy).values("pk")) | Q(Exists(decided))
