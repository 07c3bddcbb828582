"""Who may decide a request: one definition, read two ways.

The approval policy and separation of duties are written here once, as an
ordered list of clauses over a small predicate language. Each predicate
evaluates on one request in Python (``holds``) and compiles to a Django ``Q``
(``q``), so the check on a single request (``request_actions``, the decision
gate) and the approver's queue (``decidable_requests``, ``?decidable=true``)
are the same clauses and cannot drift apart. The first clause that fails on a
request says why the person may not decide it.

Atoms are few and each is written in both forms side by side: who filed the
request, which team owns it, what a rule matches on, how many approvals a
group has given in the current revision, and whether this person already gave
one. Everything about the person (their teams, groups, MFA enrolment) is fixed
when the clauses are built, so it compiles to a constant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from approvals.models import Decision, DecisionKind
from approvals.policy import OWNING_TEAM, Policy, RequestFacts, Requirement, Rule
from exceptions.models import ExceptionRequest, RequestDestination

MFA_STEP_UP_REQUIRED = "mfa_step_up_required"
NOTHING = Q(pk__in=[])
# An empty Q() vanishes when OR-ed (Q(a) | Q() is Q(a)), so "every request" is spelled out.
EVERYTHING = Q(pk__isnull=False)
# Where each fact a rule can match on lives in the database.
FACT_FIELDS = {
    "environment": "workload__environment",
    "team": "workload__team__slug",
    "data_class": "data_class",
    "risk_tier": "risk_tier",
    "purpose": "purpose",
    "wildcard": "has_wildcard",
}


@dataclass(frozen=True)
class Subject:
    """One request as the predicates read it: its facts and the approvals of its current revision."""

    request: ExceptionRequest
    facts: RequestFacts
    approvals: tuple[Decision, ...]
    missing_summary: str = ""  # the approval state's, for the message when no slot is left


@dataclass
class Compiler:
    """Collects the annotations the compiled ``Q`` refers to (one per approval count, the wildcard flag)."""

    annotations: dict[str, Any] = field(default_factory=dict)  # alias -> Subquery or Exists
    _groups: dict[str, str] = field(default_factory=dict)

    def approvals_of(self, group: str) -> str:
        alias = self._groups.get(group)
        if alias is None:
            alias = self._groups[group] = f"approved_{len(self._groups)}"
            counted = (
                Decision.objects.filter(
                    request=OuterRef("pk"),
                    request_revision=OuterRef("revision"),
                    kind=DecisionKind.APPROVE,
                    counts_for=group,
                )
                .values("request")
                .annotate(n=Count("id"))
                .values("n")
            )
            self.annotations[alias] = Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))
        return alias

    def wildcard(self) -> str:
        if "has_wildcard" not in self.annotations:
            # The SQL form of exceptions.validators.is_wildcard.
            destinations = RequestDestination.objects.filter(request=OuterRef("pk"), host__startswith="*.")
            self.annotations["has_wildcard"] = Exists(destinations)
        return "has_wildcard"

    def apply(self, queryset: QuerySet[ExceptionRequest], q: Q) -> QuerySet[ExceptionRequest]:
        return queryset.annotate(**self.annotations).filter(q) if self.annotations else queryset.filter(q)


class Pred:
    """A condition on a request, true or false in Python and in SQL alike."""

    def holds(self, subject: Subject) -> bool:
        raise NotImplementedError

    def q(self, compiler: Compiler) -> Q:
        raise NotImplementedError


@dataclass(frozen=True)
class Const(Pred):
    value: bool

    def holds(self, subject: Subject) -> bool:
        return self.value

    def q(self, compiler: Compiler) -> Q:
        return EVERYTHING if self.value else NOTHING


TRUE = Const(True)
FALSE = Const(False)


@dataclass(frozen=True)
class AllOf(Pred):
    parts: tuple[Pred, ...]

    def holds(self, subject: Subject) -> bool:
        return all(p.holds(subject) for p in self.parts)

    def q(self, compiler: Compiler) -> Q:
        result = EVERYTHING
        for part in self.parts:
            result &= part.q(compiler)
        return result


@dataclass(frozen=True)
class AnyOf(Pred):
    parts: tuple[Pred, ...]

    def holds(self, subject: Subject) -> bool:
        return any(p.holds(subject) for p in self.parts)

    def q(self, compiler: Compiler) -> Q:
        result = NOTHING
        for part in self.parts:
            result |= part.q(compiler)
        return result


@dataclass(frozen=True)
class Not(Pred):
    part: Pred

    def holds(self, subject: Subject) -> bool:
        return not self.part.holds(subject)

    def q(self, compiler: Compiler) -> Q:
        return ~self.part.q(compiler)


def all_of(parts: Iterable[Pred]) -> Pred:
    kept = [p for p in parts if p != TRUE]
    if FALSE in kept:
        return FALSE
    return kept[0] if len(kept) == 1 else AllOf(tuple(kept)) if kept else TRUE


def any_of(parts: Iterable[Pred]) -> Pred:
    kept = [p for p in parts if p != FALSE]
    if TRUE in kept:
        return TRUE
    return kept[0] if len(kept) == 1 else AnyOf(tuple(kept)) if kept else FALSE


def negate(part: Pred) -> Pred:
    if isinstance(part, Const):
        return Const(not part.value)
    return Not(part)


@dataclass(frozen=True)
class FiledBy(Pred):
    """The request's ``requester`` or ``filed_by`` is this user."""

    role: str
    user_id: int

    def holds(self, subject: Subject) -> bool:
        return bool(getattr(subject.request, f"{self.role}_id") == self.user_id)

    def q(self, compiler: Compiler) -> Q:
        return Q(**{f"{self.role}_id": self.user_id})


@dataclass(frozen=True)
class OwnedBy(Pred):
    """The request's workload belongs to one of these teams."""

    team_ids: frozenset[int]

    def holds(self, subject: Subject) -> bool:
        return subject.request.workload.team_id in self.team_ids

    def q(self, compiler: Compiler) -> Q:
        return Q(workload__team_id__in=sorted(self.team_ids))


@dataclass(frozen=True)
class Matches(Pred):
    """One condition of a rule's ``match`` (the same test as ``Rule.matches``)."""

    key: str
    expected: frozenset[str] | bool

    def holds(self, subject: Subject) -> bool:
        actual = getattr(subject.facts, self.key)
        return actual == self.expected if isinstance(self.expected, bool) else actual in self.expected

    def q(self, compiler: Compiler) -> Q:
        if self.key == "wildcard":
            return Q(**{compiler.wildcard(): self.expected})
        assert not isinstance(self.expected, bool)
        return Q(**{f"{FACT_FIELDS[self.key]}__in": sorted(self.expected)})


@dataclass(frozen=True)
class ApprovalsBelow(Pred):
    """Fewer than ``count`` approvals of the current revision count for ``group``."""

    group: str
    count: int

    def holds(self, subject: Subject) -> bool:
        return sum(1 for d in subject.approvals if d.counts_for == self.group) < self.count

    def q(self, compiler: Compiler) -> Q:
        return Q(**{f"{compiler.approvals_of(self.group)}__lt": self.count})


@dataclass(frozen=True)
class ApprovedBy(Pred):
    """This user already approved the current revision."""

    user_id: int

    def holds(self, subject: Subject) -> bool:
        return any(d.actor_id == self.user_id for d in subject.approvals)

    def q(self, compiler: Compiler) -> Q:
        mine = Decision.objects.filter(
            request=OuterRef("pk"), request_revision=OuterRef("revision"), kind=DecisionKind.APPROVE, actor=self.user_id
        )
        return Q(Exists(mine))


# --- The person, and the clauses ------------------------------------------------


@dataclass(frozen=True)
class ApproverProfile:
    """What the policy needs to know about a person, read once per user object."""

    user_id: int | None
    approver_team_ids: frozenset[int]
    member_team_ids: frozenset[int]
    groups: frozenset[str]
    mfa_enrolled: bool
    # Acting through a browser session, where an MFA step-up can be given (an API token cannot).
    can_step_up: bool = True


Why = Callable[[Subject, Rule], str]


@dataclass(frozen=True)
class Clause:
    """A condition every decider must meet, its stable code, and what to tell someone who does not."""

    code: str
    pred: Pred
    why: Why


def rule_matches(rule: Rule) -> Pred:
    return all_of(Matches(key, expected) for key, expected in rule.match.items())


def per_rule(policy: Policy, condition: Callable[[Rule], Pred]) -> Pred:
    """``condition`` of the rule that applies to the request (first match wins)."""
    branches = []
    earlier: list[Pred] = []
    for rule in policy.rules:
        match = rule_matches(rule)
        branches.append(all_of([match, *(negate(e) for e in earlier), condition(rule)]))
        earlier.append(match)
    return any_of(branches)


def in_group(profile: ApproverProfile, requirement: Requirement) -> Pred:
    if requirement.group == OWNING_TEAM:
        return OwnedBy(profile.approver_team_ids)
    return Const(requirement.group in profile.groups)


def may_fill(profile: ApproverProfile, requirement: Requirement) -> Pred:
    """In the required group, and outside the requesting team when the requirement says so."""
    outside = negate(OwnedBy(profile.member_team_ids)) if requirement.outside_team else TRUE
    return all_of([in_group(profile, requirement), outside])


def _who(subject: Subject, rule: Rule) -> str:
    team = subject.request.workload.team.name
    who = " or ".join(
        f"approvers for team {team}" if r.group == OWNING_TEAM else f"members of {r.group}" for r in rule.requires
    )
    return f"Only {who} may decide this request (rule {rule.name})."


def _outside(subject: Subject, rule: Rule) -> str:
    return (
        f"Rule {rule.name} needs approvers from outside team {subject.request.workload.team.name}; "
        "you are a member of it."
    )


def _missing(subject: Subject, rule: Rule) -> str:
    return (
        f"Your group's approval is already given; {subject.missing_summary or 'nothing is missing'}. "
        "You may still reject or request changes."
    )


@dataclass(frozen=True)
class Clauses:
    """The decide clauses (reject, request changes) and the approve clauses (those, plus a free slot)."""

    decide: tuple[Clause, ...]
    approve: tuple[Clause, ...]
    fill: Callable[[Rule], list[tuple[Requirement, Pred]]]


def build_clauses(profile: ApproverProfile, policy: Policy) -> Clauses:
    if profile.user_id is None:
        nobody = Clause("not_signed_in", FALSE, lambda s, r: "Sign in to decide requests.")
        return Clauses((nobody,), (nobody,), lambda rule: [])
    uid = profile.user_id
    must_enrol = bool(settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS) and not profile.mfa_enrolled
    decide = (
        Clause(
            "separation_of_duties",
            negate(FiledBy("requester", uid)),
            lambda s, r: "Separation of duties: you filed this request, so someone else must decide it.",
        ),
        # Issue 10: an integration that filed for someone must not approve it either.
        Clause(
            "separation_of_duties",
            negate(FiledBy("filed_by", uid)),
            lambda s, r: (
                "Separation of duties: you filed this request for someone else, so someone else must decide it."
            ),
        ),
        Clause(
            "not_an_approver", per_rule(policy, lambda rule: any_of(in_group(profile, r) for r in rule.requires)), _who
        ),
        Clause(
            "outside_team_required",
            per_rule(policy, lambda rule: any_of(may_fill(profile, r) for r in rule.requires)),
            _outside,
        ),
        Clause(
            "mfa_enrolment_required",
            per_rule(policy, lambda rule: Const(not rule.mfa or profile.mfa_enrolled)),
            lambda s, r: (
                f"Rule {r.name} needs MFA at the decision and you have no authenticator; add an authenticator "
                "app under Security (top right) first."
            ),
        ),
        Clause(
            MFA_STEP_UP_REQUIRED,
            per_rule(policy, lambda rule: Const(not rule.mfa or profile.can_step_up)),
            lambda s, r: (
                f"Rule {r.name} needs MFA at the decision: a person decides it in a browser after an MFA "
                "step-up; an API token cannot give one."
            ),
        ),
        Clause(
            "mfa_enrolment_required",
            Const(not must_enrol),
            lambda s, r: "Approvers must enrol an authenticator app (MFA) before deciding; add one under Security.",
        ),
    )
    approve = (
        *decide,
        Clause(
            "already_approved",
            negate(ApprovedBy(uid)),
            lambda s, r: "You already approved this request; one person counts once.",
        ),
        Clause(
            "group_approval_given",
            per_rule(
                policy,
                lambda rule: any_of(
                    all_of([may_fill(profile, r), ApprovalsBelow(r.group, r.count)]) for r in rule.requires
                ),
            ),
            _missing,
        ),
    )

    def fill(rule: Rule) -> list[tuple[Requirement, Pred]]:
        return [(r, may_fill(profile, r)) for r in rule.requires]

    return Clauses(decide=decide, approve=approve, fill=fill)


def first_failure(clauses: Sequence[Clause], subject: Subject) -> Clause | None:
    """The first clause that does not hold on ``subject``; None when all hold."""
    return next((clause for clause in clauses if not clause.pred.holds(subject)), None)


def first_denial(clauses: Sequence[Clause], subject: Subject, rule: Rule) -> str | None:
    """Why the first failing clause fails on ``subject`` (``rule`` is the one that applies); None when all hold."""
    failing = first_failure(clauses, subject)
    return None if failing is None else failing.why(subject, rule)


def compile_clauses(clauses: Sequence[Clause], compiler: Compiler) -> Q:
    return all_of(c.pred for c in clauses).q(compiler)


def clauses_for(profile: ApproverProfile, policy: Policy) -> Clauses:
    """Built once per person, policy revision and enrolment setting (pages ask for every row)."""
    key = (profile, policy.path, policy.revision, bool(settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS))
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) > 256:
            _CACHE.clear()
        found = _CACHE[key] = build_clauses(profile, policy)
    return found


_CACHE: dict[tuple[Any, ...], Clauses] = {}
