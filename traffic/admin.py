"""Gateways in the admin: read-only here; they are registered through the service (audited)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import audited_action
from foundation.outbox.models import OutboxMessage, OutboxStatus
from traffic.models import EgressGateway, StaleNotice
from traffic.operations import retry_parked


@admin.register(EgressGateway)
class EgressGatewayAdmin(admin.ModelAdmin[EgressGateway]):
    list_display = ["name", "kind", "environment", "owner_team", "last_record_at"]
    list_filter = ["kind", "environment"]
    readonly_fields = [f.name for f in EgressGateway._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the "Register a gateway" page shows the token once; see /gateways/new/

    def has_delete_permission(self, request: HttpRequest, obj: EgressGateway | None = None) -> bool:
        return False  # deleting one would drop its token and records without an audit event


@admin.register(StaleNotice)
class StaleNoticeAdmin(admin.ModelAdmin[StaleNotice]):
    list_display = ["grant", "status", "noticed_at", "revoke_after", "kept_by"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in StaleNotice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Outbox rows: read-only, with a retry action for parked rows. Registered here, beside the
# operations page, because a retry is an audited operator action (the outbox sits below audit).
@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin[OutboxMessage]):
    list_display = ["id", "kind", "status", "attempts", "available_at", "delivered_at", "short_error"]
    list_filter = ["status", "kind"]
    search_fields = ["idempotency_key", "last_error"]
    actions = ["retry"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    @admin.display(description="last error")
    def short_error(self, obj: OutboxMessage) -> str:
        return obj.last_error[:120]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxMessage | None = None) -> bool:
        return False

    @admin.action(description="Retry the selected parked rows")
    @audited_action
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        ids = list(queryset.filter(status=OutboxStatus.PARKED).values_list("id", flat=True))
        count = retry_parked(actor=request.user, message_ids=ids)
        self.message_user(request, f"{count} parked row(s) queued again.", messages.SUCCESS)
