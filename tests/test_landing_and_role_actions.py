"""Each role lands on its most useful page, and no page offers an action the role cannot take.

The read-only auditor lands on the audit log, never on "My requests" with
"New request" buttons; the pages it can reach (crawled from where it lands)
show no form that changes anything and no link to filing or break-glass.
"""

from __future__ import annotations

import html
import re
from collections import deque
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from approvals.breakglass import breakglass_workloads
from approvals.models import BreakGlassUse
from approvals.services import approve_request, request_changes
from exceptions.access import SECURITY_GROUP, requestable_workloads, roles_for
from exceptions.services.requests import submit_request
from tests.approvals.conftest import enrol_mfa
from tests.approvals.test_breakglass import PAGE as BREAKGLASS_PAGE
from tests.approvals.test_breakglass import form as breakglass_form
from tests.approvals.test_breakglass import step_up
from tests.factories import ApproverGroupFactory, MembershipFactory, UserFactory, WorkloadFactory
from tests.traffic.conftest import flow, gateway, gateway_and_token, report  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def signed_in_lands_on(username: str) -> str:
    """Sign in with the password, as a person does, and follow the redirects: where do they land?"""
    client = Client()
    response = client.post("/accounts/login/", {"login": username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200, response.content[:300]
    path = response.request["PATH_INFO"]
    query = response.request.get("QUERY_STRING", "")
    # And "/" (the brand link) lands there too.
    again = client.get("/", follow=True)
    assert again.request["PATH_INFO"] == path
    return f"{path}?{query}" if query else path


@pytest.fixture
def people(team: Any, other_team: Any, requester: Any, approver: Any, security_officer: Any, auditor: Any) -> Any:
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    member_approver = UserFactory(username="mia")
    MembershipFactory(team=team, user=member_approver)
    ApproverGroupFactory(name="Platform approvers", teams=[other_team], members=[member_approver])
    nobody = UserFactory(username="nemo")
    return {"admin": admin, "member_approver": member_approver, "nobody": nobody}


def test_each_role_lands_on_its_most_useful_page(
    people: Any, submit: Any, requester: Any, approver: Any, security_officer: Any, auditor: Any
) -> None:
    # Nothing waits for anyone yet.
    assert signed_in_lands_on("alice") == "/requests/"  # a requester: their requests
    assert signed_in_lands_on("mia") == "/requests/"  # an approver who files too, nothing to decide: the same
    assert signed_in_lands_on("bob") == "/approvals/"  # an approver who files nothing: the queue, even empty
    assert signed_in_lands_on("sec") == "/approvals/"  # a security officer: the queue
    assert signed_in_lands_on("audrey") == "/audit/"  # the read-only auditor: the audit log
    assert signed_in_lands_on("root") == "/audit/"  # an admin outside any team: the audit log
    assert signed_in_lands_on("nemo") == "/requests/"  # in no team and no role: their (empty) requests

    submit()  # now a decision waits for bob (and the security officer may see it)
    assert signed_in_lands_on("bob") == "/approvals/"
    assert signed_in_lands_on("alice") == "/requests/"
    assert signed_in_lands_on("audrey") == "/audit/"


def test_an_approver_who_files_lands_on_the_queue_while_a_decision_waits(
    people: Any, other_team: Any, submit: Any
) -> None:
    platform_dev = UserFactory(username="pat")
    MembershipFactory(team=other_team, user=platform_dev)
    submit_request(
        actor=platform_dev,
        workload=WorkloadFactory(team=other_team, name="ci-runner", namespace="ci", service_account="runner"),
        destinations=[{"host": "pypi.org", "port": 443, "protocol": "tcp"}],
        purpose="dependency_fetch",
        data_class="public",
        justification="The CI runners install pinned packages from PyPI for every build.",
        lifetime=timedelta(days=7),
    )
    assert signed_in_lands_on("mia") == "/approvals/"  # existing behaviour: decisions waiting come first


def test_who_may_file_and_break_glass_agree_with_the_workloads_they_are_offered(
    people: Any, requester: Any, approver: Any, security_officer: Any, auditor: Any, workload: Any
) -> None:
    for user in [requester, approver, security_officer, auditor, *people.values()]:
        roles = roles_for(user)
        assert roles.can_file_requests == requestable_workloads(user).exists(), user
        assert roles.can_break_glass == breakglass_workloads(user).exists(), user


# --- Pages the auditor can open: no action it cannot take ---------------------------------------

SKIP = ("/accounts/", "/api/", "/static/", "/admin/", "/metrics")
# Actions the auditor cannot take, as links: filing (and renewing), break-glass and its drill,
# resubmitting, running an operation.
FORBIDDEN_LINKS = [
    re.compile(r"^/requests/new/"),
    re.compile(r"^/approvals/break-glass/(drill/)?$"),
    re.compile(r"^/approvals/\d+/resubmit/"),
]
POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>", re.I)


def _links(body: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"#]*)', body)]


def crawl(client: Client, start: list[str], limit: int = 150) -> dict[str, str]:
    """Every page reachable from ``start`` through links (paths only, queries dropped but for ``start``)."""
    pages: dict[str, str] = {}
    queue, seen = deque(start), set(start)
    while queue and len(pages) < limit:
        url = queue.popleft()
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        body = response.content.decode()
        pages[url] = body
        for href in _links(body):
            path = urlsplit(href).path
            if not path.startswith("/") or path.startswith(SKIP) or path in seen:
                continue
            seen.add(path)
            queue.append(path)
    return pages


def offered_actions(pages: dict[str, str]) -> list[str]:
    found = []
    for url, body in pages.items():
        for form in POST_FORM.findall(body):
            if 'action="/accounts/logout/"' not in form:
                found.append(f"{url}: {form}")
        for href in _links(body):
            path = urlsplit(href).path
            if any(p.match(path) for p in FORBIDDEN_LINKS):
                found.append(f"{url}: link to {href}")
        if re.search(r">\s*New request\s*<", body):
            found.append(f"{url}: 'New request'")
    return found


@pytest.fixture
def everything(
    team: Any,
    requester: Any,
    approver: Any,
    workload: Any,
    submit: Any,
    gateway: Any,  # noqa: F811
) -> dict[str, Any]:
    """An object of each kind the auditor may look at: requests in several states, grants,
    a break-glass use, denied traffic (metrics and the workload's traffic page)."""
    now = timezone.now()
    pending = submit(destinations=[{"host": "pending.partner.example", "port": 443}])
    sent_back = request_changes(
        actor=approver, request=submit(destinations=[{"host": "b.partner.example", "port": 443}]), comment="Narrower."
    )
    [grant] = approve_request(actor=approver, request=submit(lifetime=timedelta(days=30)))
    report(gateway, flow(grant.identity, "denied.partner.example", 443, "deny", now), now=now)
    client = Client()
    client.force_login(requester)
    step_up(client, enrol_mfa(requester))
    assert client.post(BREAKGLASS_PAGE, breakglass_form(workload)).status_code == 302
    use = BreakGlassUse.objects.get()
    return {"pending": pending, "sent_back": sent_back, "grant": grant, "workload": workload, "breakglass": use}


def _start(everything: dict[str, Any]) -> list[str]:
    grant, workload = everything["grant"], everything["workload"]
    return [
        "/",
        "/requests/?scope=all",
        f"/requests/{everything['pending'].pk}/",
        f"/requests/{everything['sent_back'].pk}/",
        f"/grants/{grant.pk}/",
        f"/workloads/{workload.pk}/traffic/",
        f"/explain?identity={workload.identity}&host=nowhere.partner.example&port=443",
        "/outcomes/",
        "/approvals/break-glass/drills/",
        f"/approvals/break-glass/{everything['breakglass'].pk}/",
    ]


def test_the_auditor_is_offered_no_action_it_cannot_take_on_any_page_it_can_open(
    everything: dict[str, Any], auditor: Any
) -> None:
    client = Client()
    client.force_login(auditor)

    pages = crawl(client, _start(everything))

    opened = set(pages)
    for expected in ("/audit/", "/grants/", "/explain", "/gateways/", "/bundles/publications/", "/outcomes/"):
        assert any(u.split("?")[0] == expected for u in opened), (expected, sorted(opened))
    assert any(re.match(r"^/approvals/break-glass/\d+/$", u) for u in opened), sorted(opened)
    assert any(re.match(r"^/requests/\d+/$", u) for u in opened) and any(re.match(r"^/grants/\d+/$", u) for u in opened)
    assert offered_actions(pages) == []


def test_the_same_crawl_finds_the_actions_a_requester_may_take(everything: dict[str, Any], requester: Any) -> None:
    """The check above is not blind: for the requester it sees filing, renewing, break-glass and cancel."""
    client = Client()
    client.force_login(requester)

    found = offered_actions(crawl(client, _start(everything)))

    assert any("link to /requests/new/" in f for f in found)
    assert any("'New request'" in f for f in found)
    assert any("link to /approvals/break-glass/" in f for f in found)
    assert any("/cancel/" in f for f in found)
    assert any("link to /requests/new/?renews=" in f for f in found)
    assert any(
        "Request access" in body
        for body in crawl(client, [f"/workloads/{everything['workload'].pk}/traffic/"]).values()
    )


def test_a_security_officer_outside_any_team_is_not_offered_filing(everything: dict[str, Any], auditor: Any) -> None:
    officer = UserFactory(username="sam")
    Group.objects.get_or_create(name=SECURITY_GROUP)[0].user_set.add(officer)
    client = Client()
    client.force_login(officer)
    pages = crawl(client, _start(everything), limit=60)
    filing = [f for f in offered_actions(pages) if "/requests/new/" in f or "'New request'" in f]
    assert filing == []
    assert any('href="/approvals/break-glass/"' in body for body in pages.values())  # it may break glass
