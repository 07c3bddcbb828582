"""What the request page says about decisions is true in every status it can be in.

"Approved by" appears only on a request that was approved; a request sent
back, rejected, cancelled, lapsed or still waiting says who did what and why.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.services import approve_request, expire_stale_requests, reject_request, request_changes
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.batches import expire_due_grants
from exceptions.services.grants import revoke_grant
from exceptions.services.requests import cancel_request, resubmit_request
from tests.approvals.conftest import enrol_mfa
from tests.approvals.test_breakglass import PAGE as BREAKGLASS_PAGE
from tests.approvals.test_breakglass import form as breakglass_form
from tests.approvals.test_breakglass import step_up
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TWO_APPROVERS = """version: 1
rules:
  - name: two-team-approvers
    description: Two approvers of the owning team.
    require:
      - group: owning-team
        count: 2
"""


@pytest.fixture
def erin(approver: Any) -> Any:
    """A second approver of the same teams as bob."""
    user = UserFactory(username="erin")
    approver.approver_groups.first().members.add(user)
    return user


@pytest.fixture
def two_approvers(settings: Any, tmp_path: Path) -> None:
    policy = tmp_path / "two.yaml"
    policy.write_text(TWO_APPROVERS)
    settings.EGRESS_APPROVAL_POLICY_FILE = policy


def page_text(client: Client, request: ExceptionRequest) -> tuple[str, str]:
    """The page's HTML and its visible text (tags dropped, spaces collapsed)."""
    response = client.get(f"/requests/{request.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", body, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return body, " ".join(text.split())


def statement(body: str, key: str) -> str:
    """The visible text of the decision fact ``<dd id=key>``."""
    found = re.search(rf'<dd id="{key}">(.*?)</dd>', body, flags=re.S)
    assert found, f"no #{key} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


STATEMENT_KEYS = (
    "approved-by",
    "approvals-so-far",
    "changes-requested-by",
    "resubmitted",
    "rejected-by",
    "cancelled-by",
    "revoked-by",
    "lapsed",
    "breakglass-by",
)


Setup = Callable[..., ExceptionRequest]


def _pending(submit: Any, **_: Any) -> ExceptionRequest:
    return submit()


def _partially_approved(submit: Any, approver: Any, **_: Any) -> ExceptionRequest:
    request = submit()
    assert approve_request(actor=approver, request=request) == []
    return request


def _sent_back(submit: Any, approver: Any, erin: Any, **_: Any) -> ExceptionRequest:
    request = _partially_approved(submit, approver)
    return request_changes(actor=erin, request=request, comment="Split the status host into its own request.")


def _resubmitted(submit: Any, approver: Any, erin: Any, requester: Any, **_: Any) -> ExceptionRequest:
    request = _sent_back(submit, approver, erin)
    return resubmit_request(
        actor=requester,
        request=request,
        destinations=[{"host": "api.partner.example", "port": 443, "protocol": "tcp"}],
        purpose=request.purpose,
        data_class=request.data_class,
        justification=request.justification,
        lifetime=request.lifetime,
    )


def _rejected(submit: Any, approver: Any, erin: Any, **_: Any) -> ExceptionRequest:
    request = _partially_approved(submit, approver)
    return reject_request(actor=erin, request=request, reason="Use the shared proxy instead.")


def _cancelled_after_changes(submit: Any, approver: Any, erin: Any, requester: Any, **_: Any) -> ExceptionRequest:
    request = _sent_back(submit, approver, erin)
    return cancel_request(actor=requester, request=request, reason="No longer needed.")


def _cancelled_while_pending(submit: Any, approver: Any, requester: Any, **_: Any) -> ExceptionRequest:
    request = _partially_approved(submit, approver)
    return cancel_request(actor=requester, request=request, reason="Filed twice.")


def _approve_fully(request: ExceptionRequest, approver: Any, erin: Any) -> ExceptionRequest:
    approve_request(actor=approver, request=request)
    assert approve_request(actor=erin, request=request)
    return ExceptionRequest.objects.get(pk=request.pk)


def _scheduled(submit: Any, approver: Any, erin: Any, **_: Any) -> ExceptionRequest:
    return _approve_fully(submit(desired_start=timezone.now() + timedelta(days=1)), approver, erin)


def _active(submit: Any, approver: Any, erin: Any, **_: Any) -> ExceptionRequest:
    return _approve_fully(submit(), approver, erin)


def _expired(submit: Any, approver: Any, erin: Any, **_: Any) -> ExceptionRequest:
    request = _active(submit, approver, erin)
    expire_due_grants(now=timezone.now() + request.lifetime + timedelta(minutes=1))
    return request


def _lapsed(submit: Any, approver: Any, settings: Any, **_: Any) -> ExceptionRequest:
    request = _partially_approved(submit, approver)
    assert expire_stale_requests(now=timezone.now() + timedelta(days=settings.EGRESS_PENDING_EXPIRY_DAYS + 1)) == 1
    return request


def _revoked(submit: Any, approver: Any, erin: Any, security_officer: Any, **_: Any) -> ExceptionRequest:
    request = _active(submit, approver, erin)
    [grant] = Grant.objects.filter(request=request)
    revoke_grant(actor=security_officer, grant=grant, reason="Partner contract ended.")
    return request


def _break_glass(requester: Any, workload: Any, **_: Any) -> ExceptionRequest:
    client = Client()
    client.force_login(requester)
    step_up(client, enrol_mfa(requester))
    assert client.post(BREAKGLASS_PAGE, breakglass_form(workload)).status_code == 302
    return ExceptionRequest.objects.get(breakglass__isnull=False)


# status, how to get there, {statement key: words it must contain}
CASES: list[tuple[str, Setup, dict[str, list[str]]]] = [
    ("pending", _pending, {}),
    ("pending", _partially_approved, {"approvals-so-far": ["Approved so far by bob", "team approver"]}),
    (
        "changes_requested",
        _sent_back,
        {
            "changes-requested-by": ["Changes requested by erin", "Split the status host into its own request."],
            "approvals-so-far": ["Approved so far by bob", "count no more once the request is resubmitted"],
        },
    ),
    (
        "pending",
        _resubmitted,
        {"resubmitted": ["Revision 2, resubmitted after changes requested by erin", "Split the status host"]},
    ),
    ("rejected", _rejected, {"rejected-by": ["Rejected by erin", "Use the shared proxy instead."]}),
    (
        "cancelled",
        _cancelled_after_changes,
        {
            "changes-requested-by": ["Changes requested by erin", "Split the status host"],
            "cancelled-by": ["Cancelled by alice", "No longer needed."],
        },
    ),
    ("cancelled", _cancelled_while_pending, {"cancelled-by": ["Cancelled by alice", "Filed twice."]}),
    ("approved", _scheduled, {"approved-by": ["Approved by bob", "erin", "team approver"]}),
    ("active", _active, {"approved-by": ["Approved by bob", "erin"]}),
    ("expired", _expired, {"approved-by": ["Approved by bob", "erin"]}),
    (
        "expired",
        _lapsed,
        {
            "lapsed": ["Expired without a decision", "No decision for"],
            "approvals-so-far": ["Approved so far by bob", "not enough to approve it"],
        },
    ),
    (
        "revoked",
        _revoked,
        {"approved-by": ["Approved by bob", "erin"], "revoked-by": ["Revoked by sec", "Partner contract ended."]},
    ),
    ("active", _break_glass, {"breakglass-by": ["Opened with break-glass by alice", "no approval"]}),
]


@pytest.mark.parametrize(
    ("status", "setup", "expected"),
    CASES,
    ids=[
        "pending",
        "pending-partly-approved",
        "changes-requested",
        "resubmitted-after-changes",
        "rejected",
        "cancelled-after-changes",
        "cancelled-while-pending",
        "approved-scheduled",
        "active",
        "expired",
        "expired-without-decision",
        "revoked",
        "break-glass",
    ],
)
def test_the_request_page_says_only_what_is_true_about_decisions(
    two_approvers: None,
    settings: Any,
    submit: Any,
    approver: Any,
    erin: Any,
    requester: Any,
    security_officer: Any,
    workload: Any,
    status: str,
    setup: Setup,
    expected: dict[str, list[str]],
) -> None:
    request = setup(
        submit=submit,
        approver=approver,
        erin=erin,
        requester=requester,
        security_officer=security_officer,
        workload=workload,
        settings=settings,
    )
    request.refresh_from_db()
    assert request.status == status
    client = Client()
    client.force_login(requester)

    body, text = page_text(client, request)

    shown = [key for key in STATEMENT_KEYS if f'<dd id="{key}">' in body]
    assert shown == [key for key in STATEMENT_KEYS if key in expected]
    for key, words in expected.items():
        said = statement(body, key)
        assert all(w in said for w in words), (key, said)
    # "Approved by" is said of an approved request only, nowhere else on the page.
    assert ("Approved by" in text) == ("approved-by" in expected), text
