"""The approver's queue is exactly the set of requests the single-request check allows (hypothesis).

Random teams, people (members, team approvers, named groups, MFA enrolled or
not), requests (filed by the requester or on their behalf, with wildcard
destinations or not, approvals already given), and random approval policies
(owning team, named groups, outside_team, mfa, first match over environment,
risk tier, team, purpose, data class and wildcard). For every person, the
queue's SQL and ``request_actions`` must agree on every request.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals.actions import request_actions
from approvals.models import ApproverGroup, Decision
from approvals.policy import current_policy
from approvals.selectors import QueueFilters, decidable_requests
from exceptions.access import SECURITY_GROUP
from exceptions.models import ExceptionRequest, RequestDestination, Team, TeamMembership, Workload

pytestmark = pytest.mark.django_db

TEAMS = ("t0", "t1", "t2")
NAMED = ("security-officers", "egress-leads")
GROUPS = ("owning-team", *NAMED)
ENVIRONMENTS = ("dev", "staging", "prod")
TIERS = ("low", "medium", "high")
PURPOSES = ("partner_api", "telemetry", "other")
DATA_CLASSES = ("public", "internal", "restricted")
STATUSES = ("pending", "pending", "pending", "draft", "changes_requested", "rejected")

person = st.fixed_dictionaries(
    {
        "member_of": st.sets(st.sampled_from(range(len(TEAMS))), max_size=2),
        "approves_for": st.sets(st.sampled_from(range(len(TEAMS))), max_size=2),
        "named": st.sets(st.sampled_from(NAMED), max_size=2),
        "mfa": st.booleans(),
    }
)


def subset(values: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values) - 1, unique=True)


match = st.fixed_dictionaries(
    {},
    optional={
        "environment": subset(ENVIRONMENTS),
        "risk_tier": subset(TIERS),
        "team": subset(TEAMS),
        "purpose": subset(PURPOSES),
        "data_class": subset(DATA_CLASSES),
        "wildcard": st.booleans(),
    },
).filter(bool)
requirements = st.lists(
    st.fixed_dictionaries(
        {"group": st.sampled_from(GROUPS), "count": st.integers(1, 2), "outside_team": st.booleans()}
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda r: r["group"],
)
rule = st.fixed_dictionaries({"match": match, "require": requirements, "mfa": st.booleans()})
last_rule = st.fixed_dictionaries({"require": requirements, "mfa": st.booleans()})


@st.composite
def worlds(draw: Any) -> dict[str, Any]:
    people = draw(st.lists(person, min_size=2, max_size=5))
    n = len(people)
    request = st.fixed_dictionaries(
        {
            "team": st.sampled_from(range(len(TEAMS))),
            "environment": st.sampled_from(ENVIRONMENTS),
            "risk_tier": st.sampled_from(TIERS),
            "purpose": st.sampled_from(PURPOSES),
            "data_class": st.sampled_from(DATA_CLASSES),
            "wildcard": st.booleans(),
            "requester": st.sampled_from(range(n)),
            "filed_by": st.one_of(st.none(), st.sampled_from(range(n))),
            "status": st.sampled_from(STATUSES),
            "revision": st.integers(1, 2),
            # (person, counts_for, revision): approvals given so far, some of an earlier revision.
            "approvals": st.lists(
                st.tuples(st.sampled_from(range(n)), st.sampled_from(GROUPS), st.integers(1, 2)),
                max_size=3,
                unique_by=lambda a: (a[0], a[2]),
            ),
        }
    )
    return {
        "people": people,
        "requests": draw(st.lists(request, min_size=1, max_size=5)),
        "rules": [*draw(st.lists(rule, max_size=3)), draw(last_rule)],
    }


_files = itertools.count()


def build(world: dict[str, Any], tmp: Path, django_settings: Any) -> list[Any]:
    rules = [{"name": f"r{i}", **r} for i, r in enumerate(world["rules"])]
    path = tmp / f"policy-{next(_files)}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "rules": rules}, sort_keys=False))
    django_settings.EGRESS_APPROVAL_POLICY_FILE = path
    teams = [Team.objects.create(slug=slug, name=slug.upper()) for slug in TEAMS]
    workloads = {
        (t, env): Workload.objects.create(
            team=team,
            name=f"svc-{t}",
            namespace=f"ns-{t}-{env}",
            service_account="svc",
            identity=f"spiffe://cluster.local/ns/ns-{t}-{env}/sa/svc",
            identity_kind="kubernetes",
            environment=env,
            role="service",
            sensitivity="low",
        )
        for t, team in enumerate(teams)
        for env in ENVIRONMENTS
    }
    security = Group.objects.get_or_create(name=SECURITY_GROUP)[0]
    named = {name: ApproverGroup.objects.create(name=name) for name in NAMED if name != SECURITY_GROUP}
    team_approvers = {t: ApproverGroup.objects.create(name=f"approvers-{t}") for t in range(len(TEAMS))}
    team_approvers[0].teams.add(teams[0])
    team_approvers[1].teams.add(teams[1])
    team_approvers[2].teams.add(teams[2])
    users = []
    for i, p in enumerate(world["people"]):
        user = get_user_model().objects.create(username=f"p{i}", email=f"p{i}@example.org")
        for t in p["member_of"]:
            TeamMembership.objects.create(team=teams[t], user=user)
        for t in p["approves_for"]:
            team_approvers[t].members.add(user)
        for name in p["named"]:
            if name == SECURITY_GROUP:
                security.user_set.add(user)
            else:
                named[name].members.add(user)
        if p["mfa"]:
            Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={})
        users.append(user)
    now = timezone.now()
    policy = current_policy()
    for r in world["requests"]:
        request = ExceptionRequest.objects.create(
            workload=workloads[(r["team"], r["environment"])],
            requester=users[r["requester"]],
            filed_by=None if r["filed_by"] is None else users[r["filed_by"]],
            purpose=r["purpose"],
            data_class=r["data_class"],
            risk_tier=r["risk_tier"],
            justification="Property test request.",
            lifetime=timedelta(days=1),
            status=r["status"],
            revision=r["revision"],
        )
        RequestDestination.objects.create(
            request=request, host="*.cdn.example" if r["wildcard"] else "a.example", port=443
        )
        for who, group, revision in r["approvals"]:
            Decision.objects.create(
                request=request,
                actor=users[who],
                kind="approve",
                counts_for=group,
                rule="r0",
                policy_revision=policy.revision,
                request_revision=revision,
                created_at=now,
            )
    return users


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds())
def test_the_queue_equals_the_requests_the_check_allows(world: dict[str, Any], tmp_path: Path, settings: Any) -> None:
    settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS = False
    with transaction.atomic():
        users = build(world, tmp_path, settings)
        policy = current_policy()
        requests = list(
            ExceptionRequest.objects.prefetch_related("destinations", "decisions").select_related("workload__team")
        )
        for user in get_user_model().objects.filter(pk__in=[u.pk for u in users]):
            actions = {r.pk: request_actions(user, r) for r in requests}
            decide = {pk for pk, a in actions.items() if a.allows("reject")}
            assert decide == {pk for pk, a in actions.items() if a.allows("request_changes")}
            approve = {pk for pk, a in actions.items() if a.allows("approve")}
            queue = set(decidable_requests(user, policy=policy).values_list("pk", flat=True))
            mine = set(
                decidable_requests(user, policy=policy, filters=QueueFilters(needs_my_group=True)).values_list(
                    "pk", flat=True
                )
            )
            assert queue == decide, (user.username, world)
            assert mine == approve, (user.username, world)
            for r in requests:
                if r.status == "pending" and user.pk in (r.requester_id, r.filed_by_id):
                    assert r.pk not in queue and "Separation of duties" in actions[r.pk].why_not("approve")
        transaction.set_rollback(True)
