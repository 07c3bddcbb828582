from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from approvals.services import approve_request
from audit.models import AuditEvent
from audit.verification import verify_chain
from exceptions.models import ExceptionRequest, Grant
from exceptions.services.batches import expire_due_grants
from exceptions.state import TransitionError
from tests.approvals.conftest import at_the_decision
from tests.factories import ApproverGroupFactory, UserFactory


def _run_together(*calls: Any) -> tuple[list[Any], list[BaseException]]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        try:
            barrier.wait()
            results.append(call())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_approvals_issue_exactly_one_set_of_grants(submit: Any, approver: Any, team: Any) -> None:
    second = UserFactory(username="frank")
    ApproverGroupFactory(teams=[team], members=[second])
    request = submit(destinations=[{"host": "a.example", "port": 443}, {"host": "b.example", "port": 443}])

    results, errors = _run_together(
        lambda: approve_request(actor=approver, request=ExceptionRequest.objects.get(pk=request.pk)),
        lambda: approve_request(actor=second, request=ExceptionRequest.objects.get(pk=request.pk)),
    )
    assert len(results) == 1, errors
    assert len(errors) == 1 and isinstance(errors[0], TransitionError)
    assert Grant.objects.count() == 2
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    assert AuditEvent.objects.filter(action="grant.issued").count() == 2
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_expiry_runs_at_once_expire_each_grant_once(submit: Any, approver: Any) -> None:
    now = timezone.now()
    for i in range(6):
        request = submit(destinations=[{"host": f"h{i}-{j}.example", "port": 443} for j in range(5)])
        approve_request(actor=approver, request=request, now=now)
    later = now + timedelta(days=8)
    results, errors = _run_together(
        lambda: expire_due_grants(now=later, batch_size=4), lambda: expire_due_grants(now=later, batch_size=4)
    )
    assert not errors
    assert sum(results) == 30
    assert AuditEvent.objects.filter(action="grant.expired").count() == 30
    assert AuditEvent.objects.filter(action="request.expired").count() == 6
    assert set(ExceptionRequest.objects.values_list("status", flat=True)) == {"expired"}
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_team_and_security_approving_at_once_complete_the_quorum_exactly_once(
    submit: Any, approver: Any, security_officer: Any
) -> None:
    from approvals.models import Decision
    from tests.approvals.conftest import enrol_mfa

    enrol_mfa(approver)
    enrol_mfa(security_officer)
    request = submit(data_class="restricted", lifetime=timedelta(days=5))
    results, errors = _run_together(
        lambda: approve_request(actor=at_the_decision(approver), request=ExceptionRequest.objects.get(pk=request.pk)),
        lambda: approve_request(
            actor=at_the_decision(security_officer), request=ExceptionRequest.objects.get(pk=request.pk)
        ),
    )
    assert not errors
    assert sorted(len(r) for r in results) == [0, 1]  # one partial approval, then the one that completes it
    assert Decision.objects.filter(kind="approve").count() == 2
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    assert Grant.objects.count() == 1
    assert verify_chain().ok
