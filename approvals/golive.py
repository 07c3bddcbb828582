"""When an approved request goes live: now, at the next change window, or after a freeze."""

from __future__ import annotations

from datetime import datetime

from approvals.access import ApprovalState
from approvals.policy import Rule
from approvals.windows import Calendar, GoLive, load_calendar
from exceptions.models import ExceptionRequest


def go_live_at(
    *, rule: Rule, environment: str, desired_start: datetime | None, now: datetime, calendar: Calendar
) -> GoLive:
    """When a request under ``rule`` would go live if its approvals were complete at ``now``, and why.

    The rule decides whether a change window applies; a freeze on the
    environment pushes the start past its end either way.
    """
    earliest = max(now, desired_start or now)
    if rule.change_window:
        result = calendar.next_window(environment, earliest)
        return GoLive(
            at=result.at, reason=f"rule {rule.name} waits for a change window: {result.reason}", window=result.window
        )
    unfrozen = calendar.unfrozen(environment, earliest)
    if unfrozen.at == now:
        return GoLive(at=now, reason="on approval")
    return unfrozen


def go_live_for(
    request: ExceptionRequest, *, now: datetime, state: ApprovalState, calendar: Calendar | None = None
) -> GoLive:
    return go_live_at(
        rule=state.rule,
        environment=request.workload.environment,
        desired_start=request.desired_start,
        now=now,
        calendar=calendar or load_calendar(now),
    )
