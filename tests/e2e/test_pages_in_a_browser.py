"""Every main page in headless Chromium: no CSP violation under the production
policy, nothing wider than a 390 x 844 phone, every aria-describedby resolves,
API docs that work offline, and the request form's live checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group

from approvals.services import approve_request
from exceptions.access import SECURITY_GROUP
from tests.e2e.conftest import log_in
from tests.factories import ApproverGroupFactory, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Collects violations from the page itself (runs before any page script, outside its CSP).
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const where = e.sourceFile + ':' + e.lineNumber;
  window.__violations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + where);
});
"""
BROKEN_DESCRIPTIONS = """
() => Array.from(document.querySelectorAll('[aria-describedby]')).flatMap((el) =>
  el.getAttribute('aria-describedby').split(/\\s+/).filter((id) => id && !document.getElementById(id))
    .map((id) => (el.name || el.id || el.tagName) + ' -> #' + id))
"""

# Table headers and dates that wrap onto more than two lines: a cell broken letter by letter.
BROKEN_CELLS = """
() => Array.from(document.querySelectorAll('main th, main td time')).flatMap((el) => {
  const range = document.createRange();
  range.selectNodeContents(el);
  const lines = new Set(Array.from(range.getClientRects()).map((r) => Math.round(r.top))).size;
  return lines > 2 ? [el.textContent.trim() + ' (' + lines + ' lines)'] : [];
})
"""


@pytest.fixture
def pages(
    transactional_db: Any, team: Any, other_team: Any, workload: Any, submit: Any, approver: Any
) -> Iterator[list[str]]:
    """A user who sees every page (member, approver, security officer) and an object of each kind."""
    user = UserFactory(username="erin")
    MembershipFactory(team=team, user=user)
    ApproverGroupFactory(name="All approvers", teams=[team, other_team], members=[user])
    Group.objects.get_or_create(name=SECURITY_GROUP)[0].user_set.add(user)
    [grant] = approve_request(actor=approver, request=submit(destinations=[{"host": "bücher.example", "port": 443}]))
    pending = submit(destinations=[{"host": "api.partner.example", "port": 8443}])
    yield [
        "/requests/",
        "/requests/?scope=all",
        "/requests/new/",
        f"/requests/{pending.pk}/",
        f"/requests/{grant.request_id}/",
        "/grants/",
        f"/grants/{grant.pk}/",
        f"/explain?identity={workload.identity}&host=xn--bcher-kva.example&port=443",
        "/explain?identity=payments/nobody&host=api.partner.example&port=443",
        "/approvals/",
        "/bundles/publications/",
        "/audit/",
        "/accounts/2fa/",
        "/api/v1/docs/",
    ]


def _offline_context(browser: Any, base: str, blocked: list[str], **options: Any) -> Any:
    """A context that can reach only the portal: anything else (a CDN) is refused and noted."""
    context = browser.new_context(**options)
    context.add_init_script(WATCH)

    def route(request: Any) -> None:
        if request.request.url.startswith(base) or request.request.url.startswith("data:"):
            request.continue_()
        else:
            blocked.append(request.request.url)
            request.abort()

    context.route("**/*", route)
    return context


def test_main_pages_have_no_csp_violations_and_fetch_nothing_from_elsewhere(
    browser: Any, live_server: Any, pages: list[str]
) -> None:
    base, blocked, problems = live_server.url, list[str](), list[str]()
    context = _offline_context(browser, base, blocked)
    page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{base}/accounts/login/")
    header = page.context.request.get(f"{base}/accounts/login/").headers["content-security-policy"]
    assert "script-src 'self'" in header and "unsafe-inline" not in header
    log_in(page, base, "erin")
    for path in pages:
        response = page.goto(base + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        problems += [f"{path}: {v}" for v in page.evaluate("window.__violations")]
    assert problems == [], "\n".join(problems)
    assert blocked == []
    context.close()


def test_api_docs_list_the_operations_offline(browser: Any, live_server: Any, pages: list[str]) -> None:
    base, blocked = live_server.url, list[str]()
    context = _offline_context(browser, base, blocked)
    page = context.new_page()
    page.goto(f"{base}/api/v1/docs/")
    page.wait_for_url("**/accounts/login/**")
    log_in(page, base, "erin")
    page.goto(f"{base}/api/v1/docs/")
    page.wait_for_selector(".opblock", timeout=20_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/requests/" in [o.replace("\u200b", "") for o in operations]
    assert blocked == []
    context.close()


def test_no_main_page_is_wider_than_a_phone_and_table_cells_stay_readable(
    browser: Any, live_server: Any, pages: list[str]
) -> None:
    base = live_server.url
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, base, "erin")
    too_wide = []
    for path in [p for p in pages if not p.startswith("/api/")]:
        page.goto(base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            too_wide.append(f"{path}: {width}px")
        too_wide += [f"{path}: {cell}" for cell in page.evaluate(BROKEN_CELLS)]
    assert too_wide == [], too_wide
    context.close()


def test_every_aria_describedby_points_at_an_element(browser: Any, live_server: Any, pages: list[str]) -> None:
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "erin")
    broken = []
    for path in [*pages, "/audit/?since=2026-02-01&until=2026-01-01"]:
        page.goto(base + path)
        broken += [f"{path}: {b}" for b in page.evaluate(BROKEN_DESCRIPTIONS)]
    # And on the request form after the server and the live preview have both spoken.
    page.goto(f"{base}/requests/new/")
    page.fill("input[name='dest-0-host']", "10.0.0.1")
    page.click("button[name=submit]")
    page.wait_for_selector("[data-field='host']")
    broken += [f"form with errors: {b}" for b in page.evaluate(BROKEN_DESCRIPTIONS)]
    assert broken == []
    context.close()


def test_request_form_shows_each_error_once_and_no_tier_until_destinations_are_valid(
    browser: Any, live_server: Any, pages: list[str], workload: Any
) -> None:
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "erin")
    page.goto(f"{base}/requests/new/")
    page.select_option("select[name=workload]", str(workload.pk))
    page.fill("input[name='dest-0-host']", "pаypal.com")  # noqa: RUF001 - a Cyrillic a
    page.wait_for_selector(".live-error [data-field='host']")
    assert page.locator("#risk-summary .tier").count() == 0
    page.select_option("select[name=purpose]", "partner_api")
    page.fill("textarea[name=justification]", "Settles card payments with the partner every night at 02:00.")
    page.click("button[name=submit]")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(600)  # the preview runs once more on load
    row = page.locator(".destination").first
    assert row.locator(".error").count() == 1
    assert "Cyrillic and Latin" in row.locator(".error").inner_text()
    assert page.locator("#risk-summary .tier").count() == 0
    page.fill("input[name='dest-0-host']", "api.partner.example")
    page.wait_for_selector("#risk-summary .tier")
    assert page.locator(".destination .error").count() == 0
    context.close()


def test_resubmit_removes_and_adds_destinations_with_the_request_forms_buttons(
    browser: Any, live_server: Any, submit: Any, approver: Any, requester: Any
) -> None:
    from approvals.services import request_changes

    request = submit(
        destinations=[{"host": "a.partner.example", "port": 443}, {"host": "b.partner.example", "port": 443}]
    )
    request_changes(actor=approver, request=request, comment="Drop b, add c.")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server.url, requester.username)
    page.goto(f"{live_server.url}/approvals/{request.pk}/resubmit/")
    page.locator(".destination .remove-row").nth(1).click()
    page.click("#add-destination")
    page.fill("input[name='dest-1-host']", "c.partner.example")
    page.click("button[name=resubmit]")
    page.wait_for_url(f"**/requests/{request.pk}/")
    request.refresh_from_db()
    assert request.status == "pending"
    assert sorted(d.host for d in request.destinations.all()) == ["a.partner.example", "c.partner.example"]
    context.close()
