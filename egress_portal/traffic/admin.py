"""Gateways in the admin: read-only here; they are registered through the service (audited)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from egress_portal.traffic.models import EgressGateway, StaleNotice


@admin.register(EgressGateway)
class EgressGatewayAdmin(admin.ModelAdmin[EgressGateway]):
    list_display = ["name", "kind", "environment", "owner_team", "last_record_at"]
    list_filter = ["kind", "environment"]
    readonly_fields = [f.name for f in EgressGateway._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the "Register a gateway" page shows the token once; see /gateways/new/


@admin.register(StaleNotice)
class StaleNoticeAdmin(admin.ModelAdmin[StaleNotice]):
    list_display = ["grant", "status", "noticed_at", "revoke_after", "kept_by"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in StaleNotice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
