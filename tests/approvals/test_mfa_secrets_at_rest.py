"""TOTP and recovery-code seeds are sealed at rest, and sign-in with a code still works."""

from __future__ import annotations

import json
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from django.db import connection
from django.test import Client

from foundation.encryption import SecretNotReadable
from tests.approvals.conftest import enrol_mfa, totp_code

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def stored_data(authenticator: Authenticator) -> str:
    """The ``data`` column as the database holds it, read without the portal's code."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT data FROM mfa_authenticator WHERE id = %s", [authenticator.pk])
        (raw,) = cursor.fetchone()
    return raw if isinstance(raw, str) else json.dumps(raw)


def test_the_totp_seed_is_not_in_the_database_and_a_code_still_signs_in(requester: Any) -> None:
    secret = enrol_mfa(requester)
    totp = Authenticator.objects.get(user=requester, type=Authenticator.Type.TOTP)
    assert secret not in stored_data(totp)
    assert "fernet:" in stored_data(totp)

    client = Client()
    response = client.post("/accounts/login/", {"login": requester.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session  # not signed in until the code
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response.status_code == 302 and "/accounts/" not in response["Location"]
    assert client.session["_auth_user_id"] == str(requester.pk)


def test_the_recovery_code_seed_is_not_in_the_database_and_a_code_still_works(requester: Any) -> None:
    enrol_mfa(requester)
    codes = RecoveryCodes.activate(requester)
    seed = codes.instance.data
    stored = stored_data(codes.instance)
    plain = RecoveryCodes(Authenticator.objects.get(pk=codes.instance.pk))
    unused = plain.get_unused_codes()
    assert seed["seed"].startswith("fernet:") and all(code not in stored for code in unused)
    assert plain.validate_code(unused[0]) and not plain.validate_code(unused[0])


def test_a_seed_left_in_plain_text_is_refused_not_read(requester: Any) -> None:
    secret = enrol_mfa(requester)
    Authenticator.objects.filter(user=requester, type=Authenticator.Type.TOTP).update(data={"secret": secret})
    with pytest.raises(SecretNotReadable, match="plain text"):
        TOTP(Authenticator.objects.get(user=requester, type=Authenticator.Type.TOTP)).validate_code(totp_code(secret))


def test_a_seed_sealed_with_an_unknown_key_is_refused(requester: Any, settings: Any) -> None:
    secret = enrol_mfa(requester)
    settings.EGRESS_SECRETS_KEY = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    with pytest.raises(SecretNotReadable, match="EGRESS_SECRETS_KEY_RETIRED"):
        TOTP(Authenticator.objects.get(user=requester, type=Authenticator.Type.TOTP)).validate_code(totp_code(secret))
