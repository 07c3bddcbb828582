"""Reads for the approver dashboard; no writes here.

The policy's first-match rules are translated into SQL, so "requests this
user may decide" and "needs my group" are filters the database applies before
paginating, and a page costs the same number of queries at any queue length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from approvals.access import ApprovalState, ApproverProfile, approval_state, profile_for
from approvals.actions import Actions, request_actions
from approvals.models import Decision, DecisionKind
from approvals.policy import OWNING_TEAM, Policy, Requirement, Rule, current_policy
from approvals.services import go_live_for
from approvals.windows import Calendar, GoLive, load_calendar
from exceptions.access import roles_for
from exceptions.approval_preview import preview_approval
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest, RequestDestination

NOTHING = Q(pk__in=[])
# An empty Q() vanishes when OR-ed (Q(a) | Q() is Q(a)), so "every request" is spelled out.
EVERYTHING = Q(pk__isnull=False)
HOSTS_SHOWN = 3


def _match_q(rule: Rule) -> Q:
    q = EVERYTHING
    for key, expected in rule.match.items():
        if key == "wildcard":
            q &= Q(has_wildcard=expected)
        elif key == "team":
            assert not isinstance(expected, bool)
            q &= Q(workload__team__slug__in=sorted(expected))
        elif key == "environment":
            assert not isinstance(expected, bool)
            q &= Q(workload__environment__in=sorted(expected))
        else:
            assert not isinstance(expected, bool)
            q &= Q(**{f"{key}__in": sorted(expected)})
    return q


def _rule_applies(policy: Policy) -> list[tuple[Rule, Q]]:
    """Each rule with the Q that selects exactly the requests it applies to (first match wins)."""
    result = []
    earlier = EVERYTHING
    for rule in policy.rules:
        match = _match_q(rule)
        result.append((rule, match & earlier))
        earlier &= ~match
    return result


def _may_fill(profile: ApproverProfile, requirement: Requirement, rule: Rule) -> Q:
    if rule.mfa and not profile.mfa_enrolled:
        return NOTHING
    if requirement.group == OWNING_TEAM:
        q = Q(workload__team_id__in=sorted(profile.approver_team_ids))
    elif requirement.group in profile.groups:
        q = EVERYTHING
    else:
        return NOTHING
    if requirement.outside_team:
        q &= ~Q(workload__team_id__in=sorted(profile.member_team_ids))
    return q


def _approvals_for(group: str) -> Coalesce:
    counted = (
        Decision.objects.filter(
            request=OuterRef("pk"), request_revision=OuterRef("revision"), kind=DecisionKind.APPROVE, counts_for=group
        )
        .values("request")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


@dataclass(frozen=True)
class QueueFilters:
    environment: str = ""
    tier: str = ""
    team: str = ""
    purpose: str = ""
    needs_my_group: bool = False


def decidable_requests(user: Any, *, policy: Policy, filters: QueueFilters | None = None) -> QuerySet[ExceptionRequest]:
    """Pending requests ``user`` may decide under ``policy``, oldest first (never their own)."""
    filters = filters or QueueFilters()
    profile = profile_for(user)
    wildcard = RequestDestination.objects.filter(request=OuterRef("pk"), host__startswith="*.")
    queryset = ExceptionRequest.objects.filter(status=RequestStatus.PENDING).exclude(requester_id=user.pk)
    queryset = queryset.annotate(has_wildcard=Exists(wildcard))
    may_decide = NOTHING
    needs_me = NOTHING
    group_counts: dict[str, str] = {}
    for rule, applies in _rule_applies(policy):
        for requirement in rule.requires:
            fill = _may_fill(profile, requirement, rule)
            if fill == NOTHING:
                continue
            may_decide |= applies & fill
            alias = group_counts.setdefault(requirement.group, f"approved_{len(group_counts)}")
            needs_me |= applies & fill & Q(**{f"{alias}__lt": requirement.count})
    for group, alias in group_counts.items():
        queryset = queryset.annotate(**{alias: _approvals_for(group)})
    queryset = queryset.filter(may_decide)
    if filters.needs_my_group:
        mine = Decision.objects.filter(
            request=OuterRef("pk"), request_revision=OuterRef("revision"), kind=DecisionKind.APPROVE, actor_id=user.pk
        )
        queryset = queryset.filter(needs_me).exclude(Exists(mine))
    if filters.environment:
        queryset = queryset.filter(workload__environment=filters.environment)
    if filters.tier:
        queryset = queryset.filter(risk_tier=filters.tier)
    if filters.team:
        queryset = queryset.filter(workload__team__slug=filters.team)
    if filters.purpose:
        queryset = queryset.filter(purpose=filters.purpose)
    return queryset.order_by("created_at", "id")


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
    approvals = [d for d in decisions if d.kind == DecisionKind.APPROVE and d.request_revision == req.revision]
    context: dict[str, Any] = {
        "approval": policy_state,
        "actions": actions,
        "decisions": decisions,
        "approved_by": approvals,
        "go_live": None,
        "preview_files": None,
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
