from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from approvals.models import ApproverGroup
from exceptions.models import ExceptionRequest, Grant, RequestDestination, Team, TeamMembership, Workload


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("correct-horse-battery")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TeamMembership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)


class WorkloadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workload

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"svc-{n}")
    namespace = factory.LazyAttribute(lambda w: f"ns-{w.name}")
    service_account = factory.LazyAttribute(lambda w: w.name)
    identity = factory.LazyAttribute(lambda w: f"spiffe://cluster.local/ns/{w.namespace}/sa/{w.service_account}")
    identity_kind = "kubernetes"
    environment = "dev"
    role = "service"
    sensitivity = "low"


class ApproverGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApproverGroup
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Approvers {n}")

    @factory.post_generation
    def teams(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted:
            self.teams.add(*extracted)

    @factory.post_generation
    def members(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted:
            self.members.add(*extracted)


class ExceptionRequestFactory(factory.django.DjangoModelFactory):
    """Rows for read-side tests (lists, query counts). Behaviour tests use the services."""

    class Meta:
        model = ExceptionRequest
        skip_postgeneration_save = True

    workload = factory.SubFactory(WorkloadFactory)
    requester = factory.SubFactory(UserFactory)
    purpose = "partner_api"
    data_class = "internal"
    justification = "Calls the partner API to settle card payments every night."
    lifetime = timedelta(days=7)
    status = "pending"
    risk_tier = "low"

    @factory.post_generation
    def destinations(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            for i, host in enumerate(extracted or ["api.partner.example"]):
                RequestDestination.objects.create(request=self, host=host, port=443 + i)


class GrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grant

    request = factory.SubFactory(ExceptionRequestFactory, status="active")
    workload = factory.LazyAttribute(lambda g: g.request.workload)
    identity = factory.LazyAttribute(lambda g: g.workload.identity)
    host = "api.partner.example"
    port = 443
    protocol = "tcp"
    valid_from = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=6))
    status = "active"
