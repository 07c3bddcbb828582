"""Who may see and do what with gateways, traffic and operations (one function per object kind)."""

from __future__ import annotations

from typing import Any

from django.http import Http404

from exceptions.access import roles_for
from exceptions.models import Workload


def can_manage_gateways(user: Any) -> bool:
    """Registering gateways (and seeing their tokens once) is for admins."""
    return bool(user.is_authenticated and (user.is_superuser or user.is_staff))


def can_operate(user: Any) -> bool:
    """The operations page (jobs, outbox, ingestion, sweeps) is for admins and security officers."""
    roles = roles_for(user)
    return can_manage_gateways(user) or roles.is_security


def access_workload_traffic(user: Any, pk: int) -> Workload:
    """A workload's observed traffic: its team, its approvers, and those who see everything; 404 otherwise."""
    workload = Workload.objects.select_related("team").filter(pk=pk).first()
    roles = roles_for(user)
    if workload is None or not (roles.sees_everything or workload.team_id in roles.visible_team_ids):
        raise Http404("No such workload.")
    return workload
