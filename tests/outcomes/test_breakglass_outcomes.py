"""Break-glass outcome figures: uses, reviews waiting and overdue, drills per team (known answers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import BreakGlassUse
from outcomes.selectors import Filters, outcomes
from outcomes.services import take_daily_snapshot
from tests.approvals.test_breakglass import DRILL, PAGE, form, mfa_requester, stepped_up  # noqa: F401

pytestmark = pytest.mark.django_db


def test_breakglass_uses_reviews_and_drills_are_snapshotted_by_team(
    stepped_up: Client,  # noqa: F811
    workload: Any,
) -> None:
    for incident in ("INC-1", "INC-2"):
        assert stepped_up.post(PAGE, form(workload, incident_ref=incident)).status_code == 302
    assert stepped_up.post(DRILL, form(workload, incident_ref="DRILL-1")).status_code == 302
    first, second = BreakGlassUse.objects.filter(drill=False).order_by("pk")
    now = timezone.now()
    BreakGlassUse.objects.filter(pk=first.pk).update(review_due_at=now - timedelta(minutes=1))
    BreakGlassUse.objects.filter(pk=second.pk).update(reviewed_at=now, review_outcome="acknowledged")
    take_daily_snapshot(now=now)

    def last(**filters: Any) -> dict[str, float | None]:
        result = outcomes(filters=Filters(period=7, **filters), today=now.date())
        [chart] = [c for c in result.charts if c.key == "breakglass"]
        return {s.label: s.values[-1] for s in chart.series}

    assert last() == {"uses": 2, "awaiting review": 1, "review overdue": 1, "drills": 1}
    assert last(team="payments") == last()
    assert last(environment="staging") == {"uses": 2, "awaiting review": 1, "review overdue": 1, "drills": 0}
    assert last(environment="prod")["uses"] is None  # no row for prod that day: a gap, not a zero
    assert outcomes(filters=Filters(period=7), today=now.date()).drills == [("payments", 1)]
    page = stepped_up.get("/outcomes/?period=7").content.decode()
    assert '<h2 id="h-drills">Break-glass drills per team</h2>' in page and "<td>payments</td><td>1</td>" in page
