"""Login, MFA enrolment and closed sign-up (django-allauth)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def log_in(client: Client, username: str) -> None:
    response = client.post("/accounts/login/", {"login": username, "password": "correct-horse-battery"})
    assert response.status_code == 302, response.content[:500]


def step_up(client: Client, url: str) -> Any:
    """MFA pages ask for the password again (allauth reauthentication) before showing."""
    response = client.get(url)
    if response.status_code == 302 and "/accounts/reauthenticate/" in response["Location"]:
        client.post(response["Location"], {"password": "correct-horse-battery"})
        response = client.get(url)
    return response


def test_login_with_a_password_and_logout(client: Client, requester: Any) -> None:
    log_in(client, "alice")
    assert client.get("/requests/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/requests/").status_code == 302


def test_wrong_password_is_refused(client: Client, requester: Any) -> None:
    response = client.post("/accounts/login/", {"login": "alice", "password": "guess"})
    assert response.status_code == 200 and b"not correct" in response.content


def test_signup_is_closed_by_default(client: Client) -> None:
    response = client.post("/accounts/signup/", {"username": "mallory", "password1": "x" * 20, "password2": "x" * 20})
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="mallory").exists()
    assert response.status_code in (200, 403)


def test_totp_enrolment_page_offers_a_secret_and_recovery_codes_exist(client: Client, requester: Any) -> None:
    log_in(client, "alice")
    index = client.get("/accounts/2fa/")
    assert index.status_code == 200 and b"Authenticator App" in index.content
    activate = step_up(client, "/accounts/2fa/totp/activate/")
    assert activate.status_code == 200
    assert b"secret" in activate.content.lower()


def test_totp_enrolment_with_a_real_code(client: Client, requester: Any) -> None:
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import hotp_value

    log_in(client, "alice")
    page = step_up(client, "/accounts/2fa/totp/activate/")
    secret = page.context["form"].secret
    import time

    code = f"{hotp_value(secret, int(time.time()) // 30):06d}"
    response = client.post("/accounts/2fa/totp/activate/", {"code": code})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=requester, type=Authenticator.Type.TOTP).exists()
