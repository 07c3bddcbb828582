"""People and helpers for approval tests: MFA enrolment, a high-risk request."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.test import Client
from django.utils import timezone

from foundation.actors import SESSION, Actor

STEP_UP_URL = "/accounts/2fa/reauthenticate/"


def enrol_mfa(user: Any) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    assert Authenticator.objects.filter(user=user).exists()
    return secret


@pytest.fixture
def mfa_approver(approver: Any) -> Any:
    approver.totp_secret = enrol_mfa(approver)
    return approver


@pytest.fixture
def mfa_security(security_officer: Any) -> Any:
    security_officer.totp_secret = enrol_mfa(security_officer)
    return security_officer


@pytest.fixture
def submit_high(submit: Any) -> Any:
    """A high-risk request in staging (restricted data): rule high-risk, no change window."""

    def _submit(**overrides: Any) -> Any:
        values: dict[str, Any] = {"data_class": "restricted", "lifetime": timedelta(days=5)}
        values.update(overrides)
        return submit(**values)

    return _submit


def at_the_decision(user: Any, *, at: datetime | None = None) -> Actor:
    """``user`` deciding in a browser session whose MFA step-up passed ``at`` (now by default).

    Service tests use it where a page would pass ``actor_for(request)`` after a
    real step-up; the page and browser tests do the step-up with a real code.
    """
    return Actor(user=user, via=SESSION, mfa_at=at or timezone.now())


def totp_code(secret: str, *, offset: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def step_up(client: Client, secret: str, *, next_url: str = "/") -> None:
    """A real MFA step-up through allauth's reauthentication form, with the current TOTP code."""
    response = client.post(f"{STEP_UP_URL}?{urlencode({'next': next_url})}", {"code": totp_code(secret)})
    assert response.status_code == 302, response.content.decode()[:500]
