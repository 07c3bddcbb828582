"""The approver's table fits a laptop window: every row's Approve button is in view and clickable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from exceptions.models import Workload
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_HOSTS = [
    {"host": "settlement-batch-upload.eu-central-1.payments-partner-integration.example.com", "port": 8443},
    {"host": "card-tokenisation-service.sandbox.acquirer-network-gateway.example.org", "port": 443},
    {"host": "fraud-scoring-callbacks.internal-risk-platform.partner.example.net", "port": 443},
]

# Where the button is, whether the point at its centre is the button itself (nothing covers or
# clips it), and whether the page or the table's wrapper scrolls sideways.
MEASURE = """
(selector) => {
  const button = document.querySelector(selector);
  const box = button.getBoundingClientRect();
  const x = box.left + box.width / 2, y = box.top + box.height / 2;
  const hit = document.elementFromPoint(x, y);
  const wrap = button.closest('.table-wrap');
  return {
    left: box.left, right: box.right, top: box.top, bottom: box.bottom,
    hit: hit === button || button.contains(hit),
    pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    wrapScrolls: wrap ? wrap.scrollWidth > wrap.clientWidth + 1 : false,
  };
}
"""


@pytest.fixture
def long_row(transactional_db: Any, team: Any, approver: Any, submit: Any) -> Any:
    workload = Workload.objects.create(
        team=team,
        name="settlement-reconciliation-nightly-batch-worker",
        namespace="payments-settlement-reconciliation",
        service_account="settlement-reconciliation-nightly-batch-worker",
        environment="staging",
    )
    submit(destinations=[{"host": "api.partner.example", "port": 443}])  # a short row beside it
    return submit(
        workload=workload,
        destinations=LONG_HOSTS,
        justification="Uploads the nightly settlement files to the acquirer and reads back the reconciliation "
        "report; without it the finance team reconciles by hand the next morning.",
        ticket_ref="CHG-2026-000123456",
        lifetime=timedelta(days=30),
    )


@pytest.mark.parametrize("width", [1280, 1366, 1440])
def test_the_approve_button_of_a_long_row_is_in_view_at_laptop_widths(
    browser: Any, live_server: Any, long_row: Any, approver: Any, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    log_in(page, live_server.url, approver.get_username())
    page.goto(f"{live_server.url}/approvals/")
    selector = f"#queue-{long_row.pk} button[name=approve]"
    page.wait_for_selector(selector)

    box = page.evaluate(MEASURE, selector)

    assert box["pageWidth"] <= width, box  # the page itself never scrolls sideways
    assert not box["wrapScrolls"], box  # nor does the table inside it
    assert box["left"] >= 0 and box["right"] <= width, box
    page.locator(selector).scroll_into_view_if_needed()
    box = page.evaluate(MEASURE, selector)
    assert box["hit"] and box["right"] <= width, box  # in view and not covered: a click lands on it
    page.click(selector, trial=True, timeout=2000)  # Playwright's own actionability check
    context.close()


def test_at_1024_pixels_the_buttons_stay_reachable_and_the_page_does_not_scroll_sideways(
    browser: Any, live_server: Any, long_row: Any, approver: Any
) -> None:
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    log_in(page, live_server.url, approver.get_username())
    page.goto(f"{live_server.url}/approvals/")
    selector = f"#queue-{long_row.pk} button[name=approve]"
    page.wait_for_selector(selector)

    box = page.evaluate(MEASURE, selector)

    assert box["pageWidth"] <= 1024, box
    assert box["right"] <= 1024, box
    page.locator(selector).scroll_into_view_if_needed()
    assert page.evaluate(MEASURE, selector)["hit"]
    page.click(selector, trial=True, timeout=2000)
    # The table may scroll inside its wrapper here; the pinned Decide column never hides a cell for good.
    page.evaluate("() => { const w = document.querySelector('.table-wrap'); w.scrollLeft = w.scrollWidth; }")
    row = f"#queue-{long_row.pk}"
    last_cell = page.locator(f"{row} td:nth-last-child(2)").bounding_box()
    decide = page.locator(f"{row} td.decide").bounding_box()
    assert last_cell is not None and decide is not None
    assert last_cell["x"] + last_cell["width"] <= decide["x"] + 1
    assert page.evaluate(MEASURE, selector)["hit"]
    context.close()
