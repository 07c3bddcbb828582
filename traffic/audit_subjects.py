"""Traffic's answers to the audit viewer (audit/hooks.py), registered in TrafficConfig.ready."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from traffic.models import EgressGateway


def team_subjects(team_slug: str) -> list[tuple[str, QuerySet[Any]]]:
    """The egress points a team owns."""
    return [("traffic.egressgateway", EgressGateway.objects.filter(owner_team__slug=team_slug))]
