"""allauth adapters: no open sign-up unless an operator turns it on; MFA secrets sealed at rest."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.http import HttpRequest

from foundation import encryption


class AccountAdapter(DefaultAccountAdapter):
    @property
    def error_messages(self) -> dict[str, Any]:
        # Say when to try again: allauth's own words only say "later".
        minutes = settings.EGRESS_LOGIN_LOCKOUT_MINUTES
        return {
            **DefaultAccountAdapter.error_messages,
            "too_many_login_attempts": (
                f"Too many failed sign-ins for this account or from your network. Try again in {minutes} minutes; "
                "if you forgot your password, ask an administrator to reset it."
            ),
        }

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.ACCOUNT_ALLOW_SIGNUPS)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        # SSO users may be provisioned on first login: the identity provider
        # already decided who belongs to the organisation.
        return True


class MFAAdapter(DefaultMFAAdapter):
    """TOTP seeds and recovery-code seeds are stored sealed with EGRESS_SECRETS_KEY
    (foundation/encryption.py): ``mfa_authenticator.data`` alone gives no code."""

    def encrypt(self, text: str) -> str:
        return encryption.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return encryption.decrypt(encrypted_text)
