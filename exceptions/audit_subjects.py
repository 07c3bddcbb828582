"""The core's answers to the audit viewer's questions (audit/hooks.py), registered in ExceptionsConfig.ready."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from exceptions.access import can_view_audit
from exceptions.models import ExceptionRequest, Grant, Team, Workload
from exceptions.services.lifecycle import GRANT_TYPE
from exceptions.services.requests import REQUEST_TYPE


class CoreReaders:
    def may_read(self, user: Any) -> bool:
        return can_view_audit(user)

    def team_choices(self) -> list[tuple[str, str]]:
        return list(Team.objects.order_by("name").values_list("slug", "name"))


def team_subjects(team_slug: str) -> list[tuple[str, QuerySet[Any]]]:
    """The team, its workloads, their requests and grants."""
    return [
        ("exceptions.team", Team.objects.filter(slug=team_slug)),
        ("exceptions.workload", Workload.objects.filter(team__slug=team_slug)),
        (REQUEST_TYPE, ExceptionRequest.objects.filter(workload__team__slug=team_slug)),
        (GRANT_TYPE, Grant.objects.filter(workload__team__slug=team_slug)),
    ]


def ticket_subjects(ticket: str) -> list[tuple[str, QuerySet[Any]]]:
    """The requests that name a ticket (any case) and the grants they produced."""
    return [
        (REQUEST_TYPE, ExceptionRequest.objects.filter(ticket_ref__iexact=ticket)),
        (GRANT_TYPE, Grant.objects.filter(request__ticket_ref__iexact=ticket)),
    ]


def related_subjects(object_type: str, object_id: int) -> list[tuple[str, str, int]]:
    """A request's grants; a grant's request."""
    if object_type == REQUEST_TYPE:
        grants = Grant.objects.filter(request_id=object_id).order_by("pk").values_list("pk", flat=True)
        return [(f"grant #{pk}", GRANT_TYPE, pk) for pk in grants]
    if object_type == GRANT_TYPE:
        request_id = Grant.objects.filter(pk=object_id).values_list("request_id", flat=True).first()
        if request_id is not None:
            return [(f"request #{request_id}", REQUEST_TYPE, request_id)]
    return []
