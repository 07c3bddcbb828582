"""Admin: read-only for requests, grants and the reference data that decides who
may request and approve (teams, memberships, workloads): their changes go through
audited services (approvals.reference), so none happens without an audit event."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.admin import audited_action
from exceptions.models import ExceptionRequest, Grant, IntegrationToken, Team, TeamMembership, Workload
from exceptions.tokens import revoke_token
from foundation.actors import actor_for
from foundation.admin import ReadOnlyAdmin


@admin.register(Team)
class TeamAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug"]


@admin.register(TeamMembership)
class TeamMembershipAdmin(ReadOnlyAdmin):
    list_display = ["team", "user", "created_at"]
    list_filter = ["team"]


@admin.register(Workload)
class WorkloadAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "environment", "identity", "role", "sensitivity"]
    list_filter = ["environment", "team", "role"]
    search_fields = ["name", "identity"]


@admin.register(ExceptionRequest)
class ExceptionRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "workload", "requester", "status", "risk_tier", "created_at"]
    list_filter = ["status", "risk_tier"]


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = ["id", "identity", "host", "port", "protocol", "status", "valid_from", "expires_at"]
    list_filter = ["status", "protocol"]
    search_fields = ["identity", "host"]


@admin.register(IntegrationToken)
class IntegrationTokenAdmin(ReadOnlyAdmin):
    """Tokens are created with ``manage.py create_api_token`` (the key is shown once) and revoked here."""

    list_display = ["name", "user", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    @audited_action
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for token in queryset:
            revoke_token(actor=actor_for(request), token=token, reason="revoked in the admin")
