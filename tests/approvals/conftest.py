"""People and helpers for approval tests: MFA enrolment, a high-risk request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret


def enrol_mfa(user: Any) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    assert Authenticator.objects.filter(user=user).exists()
    return secret


@pytest.fixture
def mfa_approver(approver: Any) -> Any:
    enrol_mfa(approver)
    return approver


@pytest.fixture
def mfa_security(security_officer: Any) -> Any:
    enrol_mfa(security_officer)
    return security_officer


@pytest.fixture
def submit_high(submit: Any) -> Any:
    """A high-risk request in staging (restricted data): rule high-risk, no change window."""

    def _submit(**overrides: Any) -> Any:
        values: dict[str, Any] = {"data_class": "restricted", "lifetime": timedelta(days=5)}
        values.update(overrides)
        return submit(**values)

    return _submit
