"""Mail through the outbox: who hears what, and one real delivery over SMTP on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection

from approvals.services import approve_request
from foundation.outbox.models import OutboxMessage
from tests.approvals.conftest import at_the_decision, enrol_mfa

pytestmark = pytest.mark.django_db


def _mails(prefix: str) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(idempotency_key__startswith=prefix).order_by("id"))


def test_new_request_asks_each_group_that_can_supply_a_missing_approval(
    submit_high: Any, mfa_approver: Any, mfa_security: Any, approver: Any, teammate: Any
) -> None:
    request = submit_high()
    asked = {tuple(m.payload["to"]): m for m in _mails(f"approval-needed:{request.pk}:")}
    assert set(asked) == {("bob@example.org",), ("sec@example.org",)}
    security_mail = asked[("sec@example.org",)]
    assert "security-officers" in security_mail.payload["subject"]
    assert f"/requests/{request.pk}/" in security_mail.payload["text"]
    assert "<a href=" in security_mail.payload["html"]


def test_after_the_team_approves_only_the_missing_group_is_asked_and_the_requester_told(
    submit_high: Any, mfa_approver: Any, mfa_security: Any
) -> None:
    request = submit_high()
    approve_request(actor=at_the_decision(mfa_approver), request=request)
    again = _mails(f"approval-needed:{request.pk}:r1:security-officers:after-")
    assert [m.payload["to"] for m in again] == [["sec@example.org"]]
    assert not _mails(f"approval-needed:{request.pk}:r1:owning-team:after-")
    [told] = _mails(f"request-approval_added:{request.pk}:")
    assert told.payload["to"] == ["alice@example.org"] and "security officer missing" in told.payload["text"]
    approve_request(actor=at_the_decision(mfa_security), request=request)
    [approved] = _mails(f"request-approved:{request.pk}:")
    assert "approved and live" in approved.payload["text"]


def test_approvers_without_mfa_are_not_asked_for_rules_that_need_it(
    submit_high: Any, approver: Any, mfa_security: Any
) -> None:
    request = submit_high()
    owning = _mails(f"approval-needed:{request.pk}:r1:owning-team:")
    assert owning == []


def test_nobody_is_asked_for_an_approval_the_gate_would_refuse_them(
    settings: Any, submit: Any, approver: Any, mfa_security: Any
) -> None:
    """Who is mailed comes from the same definition as who may decide (approvals.eligibility)."""
    settings.EGRESS_MFA_REQUIRED_FOR_APPROVERS = True  # every approver must enrol, whatever the rule
    request = submit()  # a rule without mfa: the team's approver would still be refused, having no authenticator
    assert _mails(f"approval-needed:{request.pk}:r1:owning-team:") == []
    enrol_mfa(approver)
    approver._egress_approver = None  # the profile cached on this user object predates the enrolment
    second = submit()
    [asked] = _mails(f"approval-needed:{second.pk}:r1:owning-team:")
    assert asked.payload["to"] == ["bob@example.org"]


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, int, list[Any]]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, received
    finally:
        controller.stop()


def test_an_outbox_mail_is_delivered_through_a_real_smtp_server(
    smtp_server: tuple[str, int, list[Any]], submit: Any, approver: Any
) -> None:
    host, port, received = smtp_server
    request = submit()
    approve_request(actor=approver, request=request, reason="Vendor is on the list.")
    [row] = _mails(f"request-approved:{request.pk}:")
    payload = row.payload
    connection = get_connection("django.core.mail.backends.smtp.EmailBackend", host=host, port=port, timeout=10)
    mail = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["text"],
        from_email="egress@example.org",
        to=payload["to"],
        connection=connection,
    )
    mail.attach_alternative(payload["html"], "text/html")
    assert mail.send() == 1
    [message] = received
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == f"[egress] Request #{request.pk} approved"
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }
    assert "approved and live" in parts["text/plain"] and "<p>" in parts["text/html"]


def test_a_still_missing_approval_is_asked_for_again_once_a_day(
    submit_high: Any, mfa_approver: Any, mfa_security: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from approvals.services import remind_missing_approvals
    from exceptions.models import ExceptionRequest

    request = submit_high()
    # Midday, so "an hour later" is the same UTC day whenever the suite runs (the reminder key is per day).
    now = timezone.now().replace(hour=12, minute=0)
    approve_request(
        actor=at_the_decision(mfa_approver, at=now - timedelta(hours=30)),
        request=request,
        now=now - timedelta(hours=30),
    )
    ExceptionRequest.objects.filter(pk=request.pk).update(updated_at=now - timedelta(hours=30))
    assert remind_missing_approvals(now=now) == 1
    assert remind_missing_approvals(now=now + timedelta(hours=1)) == 0  # same day: the outbox key holds
    [reminder] = _mails(f"approval-needed:{request.pk}:r1:security-officers:reminder-")
    assert reminder.payload["to"] == ["sec@example.org"]
    ExceptionRequest.objects.filter(pk=request.pk).update(updated_at=now + timedelta(hours=1))
    assert remind_missing_approvals(now=now + timedelta(days=1)) == 0  # activity within the last day: quiet
