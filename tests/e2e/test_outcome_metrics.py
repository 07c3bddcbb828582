"""The outcome metrics page in headless Chromium: charts drawn, filters applied, numbers readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from approvals.services import approve_request
from outcomes.services import take_daily_snapshot
from tests.e2e.conftest import log_in


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_metrics_page_draws_charts_and_filters_them(
    browser: Any,
    live_server: Any,
    submit: Any,
    approver: Any,
    requester: Any,
    tmp_path: Path,
) -> None:
    approve_request(actor=approver, request=submit(), reason="fine")
    approve_request(
        actor=approver, request=submit(destinations=[{"host": "*.files.example", "port": 443}]), reason="ok"
    )
    take_daily_snapshot()
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, "alice")
    page.click("nav >> text=Metrics")
    page.wait_for_selector("svg.chart")
    assert page.locator("svg.chart").count() == 11
    page.select_option("select[name=period]", "7")
    page.select_option("select[name=team]", "payments")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/outcomes/?period=7&team=payments*")
    # Each series is named at its last point: no legend to hunt for.
    assert "wildcard grants 1" in page.locator("section[aria-labelledby=h-wildcards] svg").text_content()
    page.click("text=The numbers (grants) >> nth=0")
    table = page.inner_text("section[aria-labelledby=h-active] table")
    assert "all tiers" in table and "2" in table
    shot = tmp_path / "outcome-metrics.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    context.close()
