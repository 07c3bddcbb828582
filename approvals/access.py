"""Who may decide a request, and what its approvals still lack.

The approval state of a request is derived here from its ``Decision`` rows and
the policy rule that matches it; nothing of it is stored on the request.
Separation of duties lives here too: the requester never approves their own
request, one person counts once, "outside the team" and "MFA enrolled" are
enforced when the rule says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from allauth.mfa.models import Authenticator
from django.core.exceptions import PermissionDenied

from approvals.models import ApproverGroup, Decision, DecisionKind
from approvals.policy import OWNING_TEAM, Policy, RequestFacts, Requirement, Rule, current_policy
from exceptions.access import access_request, roles_for
from exceptions.choices import RequestStatus
from exceptions.models import ExceptionRequest
from exceptions.state import TransitionError
from exceptions.validators import is_wildcard

MFA_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


@dataclass(frozen=True)
class ApproverProfile:
    """What the policy needs to know about a person, read once per user object."""

    user_id: int | None
    approver_team_ids: frozenset[int]
    member_team_ids: frozenset[int]
    groups: frozenset[str]
    mfa_enrolled: bool


def profile_for(user: Any) -> ApproverProfile:
    cached: ApproverProfile | None = getattr(user, "_egress_approver", None)
    if cached is not None:
        return cached
    roles = roles_for(user)
    if not user.is_authenticated or not user.is_active:
        profile = ApproverProfile(None, frozenset(), frozenset(), frozenset(), False)
    else:
        groups = set(user.groups.values_list("name", flat=True))
        groups.update(ApproverGroup.objects.filter(members=user).values_list("name", flat=True))
        profile = ApproverProfile(
            user_id=user.pk,
            approver_team_ids=roles.approver_team_ids,
            member_team_ids=roles.member_team_ids,
            groups=frozenset(groups),
            mfa_enrolled=Authenticator.objects.filter(user=user, type__in=MFA_TYPES).exists(),
        )
    user._egress_approver = profile
    return profile


def facts_of(request: ExceptionRequest) -> RequestFacts:
    """The request as the policy sees it (destinations should be prefetched on lists)."""
    return RequestFacts(
        environment=request.workload.environment,
        data_class=request.data_class,
        risk_tier=request.risk_tier,
        purpose=request.purpose,
        team=request.workload.team.slug,
        wildcard=any(is_wildcard(d.host) for d in request.destinations.all()),
    )


@dataclass(frozen=True)
class Given:
    requirement: Requirement
    by: tuple[str, ...]

    @property
    def missing(self) -> int:
        return max(self.requirement.count - len(self.by), 0)


@dataclass(frozen=True)
class ApprovalState:
    rule: Rule
    policy_revision: str
    given: tuple[Given, ...]

    @property
    def complete(self) -> bool:
        return all(g.missing == 0 for g in self.given)

    @property
    def missing(self) -> list[Given]:
        return [g for g in self.given if g.missing]

    @property
    def approvers(self) -> list[str]:
        return [name for g in self.given for name in g.by]

    def missing_summary(self) -> str:
        """``"security officer missing"`` and the like; empty when complete."""
        parts = [f"{g.missing} {g.requirement.label}" if g.missing > 1 else g.requirement.label for g in self.missing]
        return f"{' and '.join(parts)} missing" if parts else ""

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule.name,
            "why": self.rule.why(),
            "policy_revision": self.policy_revision,
            "required": [
                {"group": g.requirement.group, "count": g.requirement.count, "outside_team": g.requirement.outside_team}
                for g in self.given
            ],
            "given": [{"group": g.requirement.group, "by": list(g.by)} for g in self.given],
            "missing": [{"group": g.requirement.group, "count": g.missing} for g in self.missing],
            "mfa_required": self.rule.mfa,
            "change_window": self.rule.change_window,
            "complete": self.complete,
        }


def current_approvals(request: ExceptionRequest, decisions: Iterable[Decision] | None = None) -> list[Decision]:
    """Approvals of the request's current revision (earlier ones were reset by a resubmission)."""
    rows = request.decisions.all() if decisions is None else decisions
    return [d for d in rows if d.kind == DecisionKind.APPROVE and d.request_revision == request.revision]


def approval_state(
    request: ExceptionRequest, *, policy: Policy | None = None, decisions: Iterable[Decision] | None = None
) -> ApprovalState:
    policy = policy or current_policy()
    rule = policy.rule_for(facts_of(request))
    approvals = current_approvals(request, decisions)
    given = tuple(
        Given(requirement=req, by=tuple(d.actor.get_username() for d in approvals if d.counts_for == req.group))
        for req in rule.requires
    )
    return ApprovalState(rule=rule, policy_revision=policy.revision, given=given)


def _in_group(profile: ApproverProfile, requirement: Requirement, request: ExceptionRequest) -> bool:
    if requirement.group == OWNING_TEAM:
        return request.workload.team_id in profile.approver_team_ids
    return requirement.group in profile.groups


def _eligible(profile: ApproverProfile, request: ExceptionRequest, rule: Rule) -> tuple[list[Requirement], str | None]:
    """The requirements this person may fill for ``request``, or why none."""
    if request.requester_id == profile.user_id:
        return [], "Separation of duties: you filed this request, so someone else must decide it."
    if request.filed_by_id == profile.user_id:
        # Issue 10: an integration that filed for someone must not approve it either.
        return [], "Separation of duties: you filed this request for someone else, so someone else must decide it."
    groups = [r for r in rule.requires if _in_group(profile, r, request)]
    if not groups:
        who = " or ".join(
            f"approvers for team {request.workload.team.name}" if r.group == OWNING_TEAM else f"members of {r.group}"
            for r in rule.requires
        )
        return [], f"Only {who} may decide this request (rule {rule.name})."
    inside = request.workload.team_id in profile.member_team_ids
    allowed = [r for r in groups if not (r.outside_team and inside)]
    if not allowed:
        return [], (
            f"Rule {rule.name} needs approvers from outside team {request.workload.team.name}; you are a member of it."
        )
    if rule.mfa and not profile.mfa_enrolled:
        return [], (
            f"Rule {rule.name} needs approvers with MFA enrolled; add an authenticator app under "
            "Security (top right) first."
        )
    return allowed, None


def decide_denial(user: Any, request: ExceptionRequest, state: ApprovalState | None = None) -> str | None:
    """Why ``user`` may not reject or request changes on ``request``; None when they may."""
    state = state or approval_state(request)
    _, denial = _eligible(profile_for(user), request, state.rule)
    return denial


def approval_slot(user: Any, request: ExceptionRequest, state: ApprovalState) -> tuple[Requirement | None, str | None]:
    """The required group this user's approval would count for, or why it would not count."""
    profile = profile_for(user)
    allowed, denial = _eligible(profile, request, state.rule)
    if denial:
        return None, denial
    if any(d.actor_id == profile.user_id for d in current_approvals(request)):
        return None, "You already approved this request; one person counts once."
    by_group = {g.requirement.group: g for g in state.given}
    # Someone in two required groups fills the scarcer, named group (security
    # officers) before the owning team's: the team has more people who can
    # supply its approval, so the other order could leave the quorum stuck.
    for requirement in sorted(allowed, key=lambda r: r.group == OWNING_TEAM):
        if by_group[requirement.group].missing:
            return requirement, None
    return None, (
        f"Your group's approval is already given; {state.missing_summary() or 'nothing is missing'}. "
        "You may still reject or request changes."
    )


def approve_denial(user: Any, request: ExceptionRequest, state: ApprovalState | None = None) -> str | None:
    state = state or approval_state(request)
    return approval_slot(user, request, state)[1]


DECIDE_ACTIONS = ("approve", "reject", "request_changes")


def access_request_to_decide(user: Any, pk: int | str, action: str) -> ExceptionRequest:
    """The request ``user`` may take ``action`` on; 404 if they may not see it, 403 with the reason otherwise."""
    if action not in DECIDE_ACTIONS:
        raise ValueError(f"Unknown decision {action!r}")
    request = access_request(user, pk)
    if request.status != RequestStatus.PENDING:
        # A state conflict, not a permission problem: the API answers 409.
        raise TransitionError(f"Request #{request.pk} is {request.status}; only pending requests are decided.")
    state = approval_state(request)
    denial = approve_denial(user, request, state) if action == "approve" else decide_denial(user, request, state)
    if denial:
        raise PermissionDenied(denial)
    return request


def recipients_for_missing(request: ExceptionRequest, state: ApprovalState) -> list[tuple[Requirement, Sequence[str]]]:
    """Per missing requirement, the e-mail addresses of people who could supply it."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    result: list[tuple[Requirement, Sequence[str]]] = []
    for given in state.missing:
        requirement = given.requirement
        if requirement.group == OWNING_TEAM:
            users = user_model.objects.filter(approver_groups__teams=request.workload.team_id)
        else:
            users = user_model.objects.filter(groups__name=requirement.group) | user_model.objects.filter(
                approver_groups__name=requirement.group
            )
        users = users.filter(is_active=True).exclude(pk=request.requester_id)
        if requirement.outside_team:
            users = users.exclude(team_memberships__team_id=request.workload.team_id)
        if state.rule.mfa:
            users = users.filter(authenticator__type__in=MFA_TYPES)
        result.append((requirement, sorted({u.email for u in users.distinct() if u.email})))
    return result
