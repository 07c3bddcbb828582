"""Outbox rows in the admin: read-only, with a retry action for parked rows."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from egress_portal.outbox.models import OutboxMessage, OutboxStatus
from egress_portal.outbox.relay import retry_parked


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
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        ids = list(queryset.filter(status=OutboxStatus.PARKED).values_list("id", flat=True))
        count = retry_parked(actor=request.user, message_ids=ids)
        self.message_user(request, f"{count} parked row(s) queued again.", messages.SUCCESS)
