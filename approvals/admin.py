from django.contrib import admin

from approvals.models import ApproverGroup


@admin.register(ApproverGroup)
class ApproverGroupAdmin(admin.ModelAdmin[ApproverGroup]):
    list_display = ["name"]
    filter_horizontal = ["teams", "members"]
