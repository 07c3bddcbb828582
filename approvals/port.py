"""The approval layer's answers to the core's questions (exceptions/hooks.py).

Registered in ``ApprovalsConfig.ready``. Each method delegates to the module
that owns the answer; nothing is decided here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from approvals import notifications, selectors, windows
from approvals.access import approval_state
from approvals.actions import request_actions
from approvals.golive import go_live_for
from approvals.models import ApproverGroup
from approvals.policy import current_policy
from approvals.services import form_preview
from approvals.windows import GoLive
from exceptions.models import ExceptionRequest, Workload
from foundation.actions import Actions


class ApprovalsAnswers:
    def approver_team_ids(self, user: Any) -> frozenset[int]:
        return frozenset(ApproverGroup.objects.filter(members=user).values_list("teams", flat=True).exclude(teams=None))

    def request_visibility(self, user: Any) -> Q | None:
        return selectors.named_group_visibility(user)

    def frozen_environments(self, now: datetime) -> frozenset[str]:
        return windows.frozen_environments(now)

    def request_submitted(self, request: ExceptionRequest, *, event: str) -> None:
        notifications.ask_for_missing_approvals(request, event=event)

    def requests_activated(self, request_ids: Sequence[int]) -> None:
        notifications.tell_activated(list(request_ids))

    def approval_summary(self, request: ExceptionRequest) -> dict[str, object]:
        return approval_state(request).as_dict()

    def go_live(self, request: ExceptionRequest, *, now: datetime, cache: dict[str, Any]) -> GoLive:
        if "calendar" not in cache:
            cache["calendar"] = windows.load_calendar(now)
        return go_live_for(request, now=now, state=approval_state(request), calendar=cache["calendar"])

    def request_actions(self, user: Any, request: ExceptionRequest) -> Actions:
        return request_actions(user, request)

    def has_decidable_requests(self, user: Any) -> bool:
        return selectors.decidable_requests(user, policy=current_policy()).exists()

    def approvable_requests(self, user: Any) -> QuerySet[ExceptionRequest]:
        return selectors.approvable_requests(user, policy=current_policy())

    def form_preview(
        self, *, workload: Workload, hosts: Sequence[str], purpose: str, data_class: str, risk_tier: str, now: datetime
    ) -> dict[str, object]:
        return form_preview(
            workload=workload, hosts=hosts, purpose=purpose, data_class=data_class, risk_tier=risk_tier, now=now
        )

    def request_page(self, user: Any, request: ExceptionRequest, *, now: datetime) -> dict[str, Any]:
        return selectors.request_page(user, request, now=now)
