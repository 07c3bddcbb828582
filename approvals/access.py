"""Who may decide a request, and what its approvals still lack.

The approval state of a request is derived here from its ``Decision`` rows and
the policy rule that matches it; nothing of it is stored on the request.
Who may decide is defined once, in ``approvals.eligibility``; this module reads
it for one request (with the reason when not) and names the slot an approval
fills. MFA at the decision is the gate's (``approvals.gate``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from allauth.mfa.models import Authenticator

from approvals.eligibility import ApproverProfile, Clauses, Subject, clauses_for, first_denial, first_failure
from approvals.models import ApproverGroup, Decision, DecisionKind
from approvals.policy import OWNING_TEAM, Policy, RequestFacts, Requirement, Rule, current_policy
from exceptions.access import AUDITOR_GROUP, SECURITY_GROUP, Roles, roles_for
from exceptions.models import ExceptionRequest, TeamMembership
from exceptions.validators import is_wildcard

MFA_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


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
            can_step_up=not getattr(user, "egress_via_token", False),
        )
    user._egress_approver = profile
    return profile


def load_profiles(users: Sequence[Any]) -> None:
    """``roles_for`` and ``profile_for`` of many active people in five queries, not five each.

    Fills the same per-object caches those functions read, with the same answers."""
    pending = [u for u in users if getattr(u, "_egress_approver", None) is None and u.is_active]
    if not pending:
        return
    ids = [u.pk for u in pending]
    django_groups: dict[int, set[str]] = defaultdict(set)
    for user_id, name in (
        type(pending[0]).groups.through.objects.filter(user_id__in=ids).values_list("user_id", "group__name")
    ):
        django_groups[user_id].add(name)
    approver_groups: dict[int, set[str]] = defaultdict(set)
    members = ApproverGroup.members.through.objects.filter(user_id__in=ids)
    for user_id, name in members.values_list("user_id", "approvergroup__name"):
        approver_groups[user_id].add(name)
    approver_teams: dict[int, set[int]] = defaultdict(set)
    for user_id, team_id in members.filter(approvergroup__teams__isnull=False).values_list(
        "user_id", "approvergroup__teams"
    ):
        approver_teams[user_id].add(team_id)
    member_teams: dict[int, set[int]] = defaultdict(set)
    for user_id, team_id in TeamMembership.objects.filter(user_id__in=ids).values_list("user_id", "team_id"):
        member_teams[user_id].add(team_id)
    enrolled = set(Authenticator.objects.filter(user_id__in=ids, type__in=MFA_TYPES).values_list("user_id", flat=True))
    for user in pending:
        pk = user.pk
        if getattr(user, "_egress_roles", None) is None:
            user._egress_roles = Roles(
                is_admin=bool(user.is_superuser),
                is_security=SECURITY_GROUP in django_groups[pk],
                is_auditor=AUDITOR_GROUP in django_groups[pk],
                member_team_ids=frozenset(member_teams[pk]),
                approver_team_ids=frozenset(approver_teams[pk]),
            )
        roles = user._egress_roles
        user._egress_approver = ApproverProfile(
            user_id=pk,
            approver_team_ids=roles.approver_team_ids,
            member_team_ids=roles.member_team_ids,
            groups=frozenset(django_groups[pk] | approver_groups[pk]),
            mfa_enrolled=pk in enrolled,
            can_step_up=not getattr(user, "egress_via_token", False),
        )


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
    policy: Policy | None = field(default=None, compare=False, repr=False)

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
    return ApprovalState(rule=rule, policy_revision=policy.revision, given=given, policy=policy)


def subject_of(request: ExceptionRequest, state: ApprovalState, decisions: Iterable[Decision] | None = None) -> Subject:
    """The request as the eligibility clauses read it (decisions should be prefetched on lists)."""
    return Subject(
        request=request,
        facts=facts_of(request),
        approvals=tuple(current_approvals(request, decisions)),
        missing_summary=state.missing_summary(),
    )


def _clauses(user: Any, state: ApprovalState) -> Clauses:
    return clauses_for(profile_for(user), state.policy or current_policy())


def first_failing(
    user: Any, request: ExceptionRequest, state: ApprovalState, *, approve: bool
) -> tuple[str, str] | None:
    """The code and the reason of the first eligibility clause ``user`` fails for this decision; None if none."""
    clauses = _clauses(user, state)
    subject = subject_of(request, state)
    failing = first_failure(clauses.approve if approve else clauses.decide, subject)
    return None if failing is None else (failing.code, failing.why(subject, state.rule))


def decide_denial(user: Any, request: ExceptionRequest, state: ApprovalState | None = None) -> str | None:
    """Why ``user`` may not reject or request changes on ``request``; None when they may."""
    state = state or approval_state(request)
    return first_denial(_clauses(user, state).decide, subject_of(request, state), state.rule)


def approval_slot(user: Any, request: ExceptionRequest, state: ApprovalState) -> tuple[Requirement | None, str | None]:
    """The required group this user's approval would count for, or why it would not count."""
    clauses = _clauses(user, state)
    subject = subject_of(request, state)
    denial = first_denial(clauses.approve, subject, state.rule)
    if denial:
        return None, denial
    by_group = {g.requirement.group: g for g in state.given}
    allowed = [r for r, pred in clauses.fill(state.rule) if pred.holds(subject) and by_group[r.group].missing]
    # Someone in two required groups fills the scarcer, named group (security
    # officers) before the owning team's: the team has more people who can
    # supply its approval, so the other order could leave the quorum stuck.
    # The approve clauses hold, so at least one requirement is open to them.
    return sorted(allowed, key=lambda r: r.group == OWNING_TEAM)[0], None


def approve_denial(user: Any, request: ExceptionRequest, state: ApprovalState | None = None) -> str | None:
    state = state or approval_state(request)
    return approval_slot(user, request, state)[1]


def recipients_for_missing(request: ExceptionRequest, state: ApprovalState) -> list[tuple[Requirement, Sequence[str]]]:
    """Per missing requirement, the e-mail addresses of people whose approval would fill it.

    The group's members are read in one query, their roles and profiles in five more
    (``load_profiles``, whatever their number); each is then asked the one
    definition of who may decide (``approval_slot``), so nobody is mailed for an
    approval the gate would refuse (no authenticator, already approved, filed it,
    inside the team, or a fuller group of theirs comes first).
    """
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
        candidates = list(users.filter(is_active=True).exclude(email="").distinct())
        load_profiles(candidates)
        addresses = {u.email for u in candidates if approval_slot(u, request, state)[0] == requirement}
        result.append((requirement, sorted(addresses)))
    return result
