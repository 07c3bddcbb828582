"""Admin for approval reference data.

Approver group membership is edited here but saved through the audited
services (approvals.reference); windows, freezes and decisions are read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest

from approvals import reference
from approvals.models import ApproverGroup, ChangeWindow, Decision, Freeze
from foundation.actors import actor_for
from foundation.admin import ReadOnlyAdmin


@admin.register(ApproverGroup)
class ApproverGroupAdmin(admin.ModelAdmin[ApproverGroup]):
    list_display = ["name"]
    filter_horizontal = ["teams", "members"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: ApproverGroup, form: ModelForm[ApproverGroup], change: bool
    ) -> None:
        # The group row and its teams are written by save_related through the services.
        pass

    def get_readonly_fields(self, request: HttpRequest, obj: ApproverGroup | None = None) -> list[str]:
        # A new name would have made a second group (ensure_approver_group goes by name).
        return ["name"] if obj is not None else []

    def save_related(self, request: HttpRequest, form: ModelForm[ApproverGroup], formsets: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            group = form.instance
            reference.set_approver_group_teams(actor=actor_for(request), group=group, teams=list(data["teams"]))
        else:
            group = reference.ensure_approver_group(
                actor=actor_for(request), name=data["name"], teams=list(data["teams"])
            )
            form.instance.pk = group.pk
        wanted = set(data["members"])
        current = set(group.members.all())
        for user in wanted - current:
            reference.add_approver(actor=actor_for(request), group=group, user=user)
        for user in current - wanted:
            reference.remove_approver(actor=actor_for(request), group=group, user=user)


@admin.register(ChangeWindow)
class ChangeWindowAdmin(ReadOnlyAdmin):
    list_display = ["name", "environments", "rrule", "first_start", "duration", "time_zone"]


@admin.register(Freeze)
class FreezeAdmin(ReadOnlyAdmin):
    list_display = ["starts_at", "ends_at", "environments", "reason"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["request", "actor", "kind", "counts_for", "rule", "policy_revision", "created_at"]
    list_filter = ["kind", "rule"]
