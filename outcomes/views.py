from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import mark_safe

from outcomes.charts import line_chart
from outcomes.selectors import PERIODS, Filters, filter_choices, outcomes, top_denied


def _filters(request: HttpRequest) -> tuple[Filters, list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """Filters from the query string; unknown values are reported and ignored, never a 500."""
    teams, environments = filter_choices()
    problems = []
    try:
        period = int(request.GET.get("period", "30"))
    except ValueError:
        period = 0
    if period not in PERIODS:
        if "period" in request.GET:
            problems.append(f"period must be one of {', '.join(map(str, PERIODS))} days; showing 30.")
        period = 30
    team = request.GET.get("team", "")
    if team and team not in {slug for slug, _ in teams}:
        problems.append(f"No team {team!r}; showing every team.")
        team = ""
    environment = request.GET.get("environment", "")
    if environment and environment not in {value for value, _ in environments}:
        problems.append(f"No environment {environment!r}; showing every environment.")
        environment = ""
    return Filters(period=period, team=team, environment=environment), teams, environments, problems


@login_required
def outcome_metrics(request: HttpRequest) -> HttpResponse:
    """Outcome charts over 7, 30 or 90 days, each with its numbers as a table and a CSV link."""
    filters, teams, environments, problems = _filters(request)
    today = timezone.now().date()
    result = outcomes(filters=filters, today=today)
    denied_callers, denied_routes = top_denied(filters=filters, today=today)
    charts = [(chart, mark_safe(line_chart(chart))) for chart in result.charts]  # noqa: S308 - escaped in line_chart
    return render(
        request,
        "outcomes/metrics.html",
        {
            "result": result,
            "charts": charts,
            "teams": teams,
            "environments": environments,
            "periods": PERIODS,
            "problems": problems,
            "denied_callers": denied_callers,
            "denied_routes": denied_routes,
            "query": request.GET.urlencode(),
        },
    )


@login_required
def outcome_csv(request: HttpRequest, key: str) -> HttpResponse:
    """One chart's numbers as CSV: a row per day, a column per series."""
    filters, _, _, _ = _filters(request)
    chart = next((c for c in outcomes(filters=filters, today=timezone.now().date()).charts if c.key == key), None)
    if chart is None:
        return HttpResponse(f"No chart {key!r}.\n", status=404, content_type="text/plain; charset=utf-8")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="egress-{key}-{filters.period}d.csv"'
    writer = csv.writer(response, lineterminator="\n")
    writer.writerow(["day", *(f"{s.label} ({chart.unit})" for s in chart.series)])
    for day, values in chart.rows():
        writer.writerow([day.isoformat(), *("" if v is None else v for v in values)])
    return response
